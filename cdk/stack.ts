/**
 * `PgfanoutStack`: one pgfanout deployment as a stack, with the alarm email as a stack
 * parameter and the topic ARN, queue URLs and dashboard URL as outputs. It composes
 * the {@link Pgfanout} construct and adds nothing else but the network it is given.
 */
import { CfnOutput, CfnParameter, Fn, Stack, type RemovalPolicy, type StackProps } from 'aws-cdk-lib';
import { SecurityGroup, Subnet, Vpc, type ISecurityGroup, type IVpc, type SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import type { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { replicaShard, type PublisherOptions, type ReplicaConfig, type SourceConfig } from './config.ts';
import type { ExistingNetwork } from './context.ts';
import { Pgfanout } from './pgfanout.ts';

/** Properties of {@link PgfanoutStack}. */
export interface PgfanoutStackProps extends StackProps {
  /** The source database. Required unless `publisherService` is false. */
  readonly source?: SourceConfig;
  /** Deploy the publisher as a Fargate service; false to run it yourself. @default true */
  readonly publisherService?: boolean;
  /** The replicas. */
  readonly replicas: readonly ReplicaConfig[];
  /** An existing VPC, subnets and optionally security groups. @default a new VPC */
  readonly network?: ExistingNetwork;
  /** Default value of the `AlarmEmail` stack parameter. @default empty: no email subscription */
  readonly alarmEmail?: string;
  /** Prefix of the resource names. @default the stack name */
  readonly namePrefix?: string;
  /** Publisher settings. */
  readonly publisher?: PublisherOptions;
  /** The publisher's image. @default built from functions/publisher/Dockerfile */
  readonly publisherImage?: ContainerImage;
  /** The applier's handler module. @default functions/applier/handler.ts */
  readonly applierEntry?: string;
  /** Retention of every log group. @default one month */
  readonly logRetention?: RetentionDays;
  /**
   * What happens to the queues (with the messages in them), the dead-letter queues and the KMS
   * key when they leave the stack (a replica removed, the stack deleted).
   * @default RemovalPolicy.RETAIN
   */
  readonly dataRemovalPolicy?: RemovalPolicy;
}

/** One pgfanout deployment. */
export class PgfanoutStack extends Stack {
  /** The deployment. */
  readonly pgfanout: Pgfanout;
  /** The `AlarmEmail` parameter. */
  readonly alarmEmailParameter: CfnParameter;

  constructor(scope: Construct, id: string, props: PgfanoutStackProps) {
    // Termination protection on unless turned off: deleting the stack deletes the topic and every subscription.
    super(scope, id, { ...props, terminationProtection: props.terminationProtection ?? true });
    this.alarmEmailParameter = new CfnParameter(this, 'AlarmEmail', {
      type: 'String',
      default: props.alarmEmail ?? '',
      allowedPattern: '^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
      constraintDescription: 'an email address, or empty for no email subscription',
      description: 'Email address notified of pgfanout alarms (confirm the subscription email AWS sends); empty for none.',
    });

    const network = props.network ? this.#existingNetwork(props.network) : undefined;
    this.pgfanout = new Pgfanout(this, 'Pgfanout', {
      ...(props.source !== undefined ? { source: props.source } : {}),
      ...(props.publisherService !== undefined ? { publisherService: props.publisherService } : {}),
      replicas: props.replicas,
      alarmEmail: this.alarmEmailParameter.valueAsString,
      ...(network ?? {}),
      ...(props.namePrefix !== undefined ? { namePrefix: props.namePrefix } : {}),
      ...(props.publisher !== undefined ? { publisher: props.publisher } : {}),
      ...(props.publisherImage !== undefined ? { publisherImage: props.publisherImage } : {}),
      ...(props.applierEntry !== undefined ? { applierEntry: props.applierEntry } : {}),
      ...(props.logRetention !== undefined ? { logRetention: props.logRetention } : {}),
      ...(props.dataRemovalPolicy !== undefined ? { dataRemovalPolicy: props.dataRemovalPolicy } : {}),
    });

    new CfnOutput(this, 'TopicArn', { value: this.pgfanout.topic.topicArn, description: 'The SNS FIFO topic the publisher publishes to (shard 0)' });
    for (const [shard, topic] of this.pgfanout.topics) {
      if (shard > 0) new CfnOutput(this, `TopicArnShard${shard}`, { value: topic.topicArn, description: `The SNS FIFO topic of shard ${shard}, which the publisher publishes to as well` });
    }
    new CfnOutput(this, 'DashboardUrl', { value: this.pgfanout.dashboardUrl, description: 'The CloudWatch dashboard' });
    new CfnOutput(this, 'OperatorRoleArn', {
      value: this.pgfanout.operatorRole.roleArn,
      description: 'Role to assume for pgfanout status, redrive and pausing a replica; besides the topic, the only principal that may send to the replica queues',
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.pgfanout.alarmTopic.topicArn, description: 'The topic pgfanout alarms notify' });
    if (!props.network?.securityGroupIds?.length) {
      const publisherGroup = this.pgfanout.publisherSecurityGroups[0];
      if (publisherGroup) {
        new CfnOutput(this, 'PublisherSecurityGroupId', {
          value: publisherGroup.securityGroupId,
          description: "Allow this group in on the source database's security group (PostgreSQL port)",
        });
      }
      new CfnOutput(this, 'ApplierSecurityGroupId', {
        value: (this.pgfanout.applierSecurityGroups[0] as ISecurityGroup).securityGroupId,
        description: "Allow this group in on the replica databases' security groups (PostgreSQL port)",
      });
    }
    // One scope per replica, so that output ids stay unique whatever the names (logical ids drop "-").
    // A template holds at most 200 outputs: the replicas of shard 0 (at most 100) have theirs
    // here, the others in their own nested stack, so that a replica's output never moves.
    const outputs = new Construct(this, 'ReplicaOutputs');
    for (const config of props.replicas) {
      const replica = this.pgfanout.replicas.get(config.name);
      if (!replica) continue;
      const scope = replicaShard(config) === 0 ? new Construct(outputs, config.name) : replica;
      new CfnOutput(scope, 'QueueUrl', { value: replica.queue.queueUrl, description: `Queue of replica ${config.name}` });
    }
  }

  #existingNetwork(network: ExistingNetwork): { vpc: IVpc; vpcSubnets: SubnetSelection; securityGroups?: ISecurityGroup[] } {
    // No lookup: the VPC and subnets are referenced by id, so synth needs no AWS credentials.
    const vpc = Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: network.vpcId, availabilityZones: Fn.getAzs() });
    const subnets = network.subnetIds.map((id) => Subnet.fromSubnetId(this, `Subnet-${id}`, id));
    const securityGroups = network.securityGroupIds?.map((id) => SecurityGroup.fromSecurityGroupId(this, `SecurityGroup-${id}`, id, { mutable: false }));
    return { vpc, vpcSubnets: { subnets }, ...(securityGroups && securityGroups.length > 0 ? { securityGroups } : {}) };
  }
}
