/**
 * Acknowledgments of AWS Control Tower's proactive controls (the cfn-guard rules that
 * `@cdklabs/cdk-validator-cfnguard` runs over the synthesized templates,
 * infra-tests/cdk-guard.test.ts) that pgfanout does not follow where it says so, each with
 * its reason. Every other rule holds for every template.
 */
import { Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** The plugin's name, the prefix of its rule ids in an acknowledgment. */
const PLUGIN = 'cdk-validator-cfnguard';

/**
 * CT.CLOUDWATCH.PR.2 (retention of at least a year) and CT.CLOUDWATCH.PR.3 (a customer-managed
 * key) on one of pgfanout's log groups.
 */
export function acknowledgeLogGroupControls(logGroup: IConstruct): void {
  Validations.of(logGroup).acknowledge(
    {
      id: `${PLUGIN}::cloudwatch_log_group_retention_period_check`,
      reason:
        'The retention is the deployer\'s choice (context logRetentionDays, prop logRetention; one month by default): these logs are operational diagnostics of the publisher, the appliers and rejected VPC traffic, not an audit trail, which CloudTrail keeps.',
    },
    {
      id: `${PLUGIN}::cloudwatch_log_group_encrypted_check`,
      reason:
        'CloudWatch Logs encrypts every log group at rest with keys it manages; a customer-managed key would have to admit the CloudWatch Logs service of the region in its policy, and the logs hold ids, counts and error messages rather than replicated rows.',
    },
  );
}
