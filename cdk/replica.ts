/**
 * One replica: its SQS FIFO queue subscribed to the topic, its FIFO dead-letter queue,
 * the applier function with its SQS event source, and the replica's alarms.
 */
import { join } from 'node:path';
import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, GraphWidget, MathExpression, TreatMissingData, type IMetric, type IWidget } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { AnyPrincipal, Effect, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Subscription, SubscriptionProtocol, type ITopic } from 'aws-cdk-lib/aws-sns';
import { DeduplicationScope, FifoThroughputLimit, Queue, QueueEncryption, RedrivePermission } from 'aws-cdk-lib/aws-sqs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { APPLIER_ENV, METRIC_NAMESPACE, METRICS } from '#core/config.ts';
import { DEFAULTS, LIMITS, deadLetterQueueName, deliveryDeadLetterQueueName, queueName, type ReplicaConfig } from './config.ts';
import { APPLIER_SERVICE_NAME, applierMetric } from './metrics.ts';
import { grantSecretRead, grantSigningKeyRead, resolveSecret, secretIdForRuntime } from './secrets.ts';
import { acknowledgeLogGroupControls } from './guard.ts';

/** Properties of {@link PgfanoutReplica}. */
export interface PgfanoutReplicaProps {
  /** The replica's settings (validated by the caller). */
  readonly config: ReplicaConfig;
  /** The SNS FIFO topic the queue subscribes to: the topic of the replica's shard. */
  readonly topic: ITopic;
  /** Customer-managed key that encrypts the queues; SNS must be allowed to use it. */
  readonly encryptionKey: IKey;
  /** VPC the applier runs in. */
  readonly vpc: IVpc;
  /** Subnets of `vpc` for the applier. @default the VPC's private subnets */
  readonly vpcSubnets?: SubnetSelection;
  /** Security groups of the applier. */
  readonly securityGroups: readonly ISecurityGroup[];
  /** Topic the alarms notify. @default alarms notify no one */
  readonly alarmTopic?: ITopic;
  /** Prefix of the queue and alarm names. */
  readonly namePrefix: string;
  /**
   * ARN of the operator role: besides the topic, the only principal that may send to the
   * queue (a dead-letter redrive sends with the caller's permissions). @default only the topic
   */
  readonly operatorRoleArn?: string;
  /** The secret holding the message signing key; the applier reads it (see {@link grantSigningKeyRead}). */
  readonly signingKey: ISecret;
  /** Path of the applier's handler module (exports `handler`). */
  readonly applierEntry: string;
  /** Folder holding package.json and package-lock.json, the root esbuild resolves from. */
  readonly projectRoot: string;
  /** Retention of the applier's logs. */
  readonly logRetention: RetentionDays;
  /** What happens to the queue and the dead-letter queue when they leave the stack. @default RemovalPolicy.RETAIN */
  readonly dataRemovalPolicy?: RemovalPolicy;
}

/** The alarms of one replica. */
export interface ReplicaAlarms {
  /** Messages are waiting in the dead-letter queue. */
  readonly deadLetters: Alarm;
  /** SNS could not deliver messages to the queue and put them in the delivery dead-letter queue. */
  readonly undelivered: Alarm;
  /** The replica is further behind the source than its threshold. */
  readonly lag: Alarm;
  /** The applier function fails. */
  readonly errors: Alarm;
  /** The applier found a gap in the stream and stopped. */
  readonly gaps: Alarm;
  /** The applier refused a message it must not trust, or a source's schema drifted, and stopped. */
  readonly refused: Alarm;
  /** The applier stopped at a message that fails for a permanent reason (poison message, schema mismatch). */
  readonly permanentFailures: Alarm;
  /** The oldest message has waited longer than `oldestMessageAlarmSeconds`: act well before SQS drops it after 14 days. */
  readonly oldestMessage: Alarm;
}

/** One replica's queue, dead-letter queue, applier function, event source and alarms. */
export class PgfanoutReplica extends Construct {
  /** The replica's name. */
  readonly replicaName: string;
  /** SQS FIFO queue subscribed to the topic with raw message delivery. */
  readonly queue: Queue;
  /** The topic's subscription of `queue`, with raw message delivery. */
  readonly subscription: Subscription;
  /** FIFO dead-letter queue of `queue`. */
  readonly deadLetterQueue: Queue;
  /** FIFO dead-letter queue of the subscription: what SNS could not deliver to `queue`. */
  readonly deliveryDeadLetterQueue: Queue;
  /** The applier function. */
  readonly function: NodejsFunction;
  /** The applier's execution role. */
  readonly role: Role;
  /** The applier's log group. */
  readonly logGroup: LogGroup;
  /** The SQS event source feeding `function` from `queue`. */
  readonly eventSource: SqsEventSource;
  /** The replica database's secret. */
  readonly secret: ISecret;
  /** The replica's alarms. */
  readonly alarms: ReplicaAlarms;
  /** Applier function timeout. */
  readonly timeout: Duration;
  /** Lag, in seconds, above which the lag alarm fires. */
  readonly lagAlarmSeconds: number;
  /** The `Deployment` metric dimension: the name prefix. */
  readonly deployment: string;

  constructor(scope: Construct, id: string, props: PgfanoutReplicaProps) {
    super(scope, id);
    const { config, namePrefix } = props;
    this.replicaName = config.name;
    this.deployment = namePrefix;
    const timeoutSeconds = config.timeoutSeconds ?? DEFAULTS.timeoutSeconds;
    this.timeout = Duration.seconds(timeoutSeconds);
    this.lagAlarmSeconds = config.lagAlarmSeconds ?? DEFAULTS.lagAlarmSeconds;

    // Messages wait up to 14 days (SQS's maximum) while a replica is down. For FIFO queues
    // a message's expiry counts from its first enqueue, also in the dead-letter queue.
    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      queueName: deadLetterQueueName(namePrefix, config.name),
      fifo: true,
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: props.encryptionKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
      // Only the replica's queue may use it as its dead-letter queue (SQS's redrive allow policy,
      // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html).
      // The queue's ARN is spelled out from its name: a reference would make the two depend on each other.
      redriveAllowPolicy: {
        redrivePermission: RedrivePermission.BY_QUEUE,
        sourceQueues: [Queue.fromQueueArn(this, 'SourceQueue', Stack.of(this).formatArn({ service: 'sqs', resource: queueName(namePrefix, config.name) }))],
      },
    });
    this.queue = new Queue(this, 'Queue', {
      queueName: queueName(namePrefix, config.name),
      fifo: true,
      // Deduplication ids come from the publisher, so that a re-publish after a crash is dropped.
      contentBasedDeduplication: false,
      deduplicationScope: DeduplicationScope.QUEUE,
      fifoThroughputLimit: FifoThroughputLimit.PER_QUEUE,
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: props.encryptionKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      visibilityTimeout: Duration.seconds(Math.min(timeoutSeconds * LIMITS.visibilityTimeoutFactor, LIMITS.maxVisibilityTimeoutSeconds)),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: config.maxReceiveCount ?? DEFAULTS.maxReceiveCount },
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    // Subscribed by hand rather than with SqsSubscription, which would make this (nested)
    // stack depend on the topic's stack, its parent. The key policy that lets SNS encrypt
    // into the queue is set once, on the key, by the Pgfanout construct.
    const allowTopic = this.queue.addToResourcePolicy(
      new PolicyStatement({
        sid: 'TheTopicDelivers',
        principals: [new ServicePrincipal('sns.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [this.queue.queueArn],
        conditions: { ArnEquals: { 'aws:SourceArn': props.topic.topicArn } },
      }),
    );
    // What SNS cannot deliver to the queue (after its retries; at once on a policy or key error)
    // lands here instead of being discarded: a FIFO topic's subscription takes a FIFO queue
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html), encrypted with a
    // key whose policy lets SNS use it (the Pgfanout construct's key does), and SNS needs
    // sqs:SendMessage on it by the topic's ARN, which Subscription adds to its queue policy
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-configure-dead-letter-queue.html).
    this.deliveryDeadLetterQueue = new Queue(this, 'DeliveryDeadLetterQueue', {
      queueName: deliveryDeadLetterQueueName(namePrefix, config.name),
      fifo: true,
      contentBasedDeduplication: false,
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: props.encryptionKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
      // SNS parks messages here through the subscription's redrive policy; no SQS queue may use
      // it as its own dead-letter queue.
      redriveAllowPolicy: { redrivePermission: RedrivePermission.DENY_ALL },
    });
    Validations.of(this.deliveryDeadLetterQueue).acknowledge(
      {
        id: 'AwsSolutions-SQS3',
        reason: "It is a dead-letter queue: the SNS subscription's (its RedrivePolicy), which the check does not recognise as it knows only SQS redrive policies.",
      },
      {
        // Control Tower's CT.SQS.PR.1 takes a queue for a dead-letter queue only when its redrive allow
        // policy lets SQS queues use it (allowAll, byQueue).
        id: 'cdk-validator-cfnguard::sqs_dlq_check',
        reason:
          "It is a dead-letter queue, of the SNS subscription (the subscription's RedrivePolicy), which SQS's redrive allow policy does not describe; that policy denies every SQS queue its use, since no queue's redrive moves messages into it.",
      },
    );
    this.subscription = new Subscription(this, 'Subscription', {
      topic: props.topic,
      protocol: SubscriptionProtocol.SQS,
      endpoint: this.queue.queueArn,
      rawMessageDelivery: true,
      deadLetterQueue: this.deliveryDeadLetterQueue,
    });
    // Anything sent to the queue runs on the replica, so nobody but the topic (and the operator's
    // redrive) may send, whatever their IAM policies say: an explicit deny wins over any allow
    // (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
    // The delivery dead-letter queue's messages go back into the queue, so it is closed the same way.
    for (const queue of [this.queue, this.deliveryDeadLetterQueue]) {
      queue.addToResourcePolicy(
        new PolicyStatement({
          sid: 'OnlyTheTopicAndTheOperatorSend',
          effect: Effect.DENY,
          principals: [new AnyPrincipal()],
          actions: ['sqs:SendMessage'],
          resources: [queue.queueArn],
          conditions: {
            ArnNotEquals: {
              'aws:SourceArn': props.topic.topicArn,
              ...(props.operatorRoleArn !== undefined ? { 'aws:PrincipalArn': props.operatorRoleArn } : {}),
            },
          },
        }),
      );
    }
    if (allowTopic.policyDependable) this.subscription.node.addDependency(allowTopic.policyDependable);

    this.secret = resolveSecret(this, 'Secret', config);
    this.logGroup = new LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    acknowledgeLogGroupControls(this.logGroup);

    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `pgfanout applier of replica ${config.name}: its queue, its secret, its logs`,
    });
    this.logGroup.grantWrite(this.role);
    // What AWSLambdaVPCAccessExecutionRole grants, minus its logs:* on every log group.
    const eniStatement = new PolicyStatement({
      effect: Effect.ALLOW,
      actions: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ],
      resources: ['*'],
    });
    this.role.addToPrincipalPolicy(eniStatement);
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'A function in a VPC needs the network-interface actions of AWSLambdaVPCAccessExecutionRole; EC2 Describe* actions support no resource scoping and the ENIs Lambda creates have no ARN before they exist.',
    });

    const include = config.include ?? [];
    const exclude = config.exclude ?? [];
    this.function = new NodejsFunction(this, 'Applier', {
      description: `pgfanout applier of replica ${config.name}`,
      entry: props.applierEntry,
      handler: 'handler',
      projectRoot: props.projectRoot,
      depsLockFilePath: join(props.projectRoot, 'package-lock.json'),
      runtime: Runtime.NODEJS_24_X,
      architecture: config.architecture === 'x86_64' ? Architecture.X86_64 : Architecture.ARM_64,
      memorySize: config.memoryMiB ?? DEFAULTS.memoryMiB,
      timeout: this.timeout,
      role: this.role,
      logGroup: this.logGroup,
      vpc: props.vpc,
      ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
      securityGroups: [...props.securityGroups],
      environment: {
        [APPLIER_ENV.REPLICA_NAME]: config.name,
        [APPLIER_ENV.REPLICA_SECRET_ARN]: secretIdForRuntime(config, this.secret),
        [APPLIER_ENV.SOURCE_IDS]: config.sources.join(','),
        ...(config.allowSchemaChanges === true ? { [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: 'true' } : {}),
        ...(include.length > 0 ? { [APPLIER_ENV.INCLUDE_TABLES]: include.join(',') } : {}),
        ...(exclude.length > 0 ? { [APPLIER_ENV.EXCLUDE_TABLES]: exclude.join(',') } : {}),
        ...(config.replicaTriggers === 'fire' ? { [APPLIER_ENV.REPLICA_TRIGGERS]: 'fire' } : {}),
        [APPLIER_ENV.DEPLOYMENT]: namePrefix,
        [APPLIER_ENV.SIGNING_KEY_SECRET]: props.signingKey.secretArn,
        ...(config.databaseTls !== undefined ? { [APPLIER_ENV.DB_TLS]: config.databaseTls } : {}),
        POWERTOOLS_SERVICE_NAME: APPLIER_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRIC_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
        // Node.js 20+ Lambda runtimes ship the Amazon RDS certificate authorities in this file but
        // do not load it by default; with it, TLS to RDS verifies the server (PGFANOUT_DB_TLS=verify-full).
        NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
      },
      bundling: applierBundling(),
    });
    grantSecretRead(this.secret, config, this.role);
    grantSigningKeyRead(props.signingKey, props.encryptionKey, this.role);

    this.eventSource = new SqsEventSource(this.queue, {
      batchSize: 10,
      reportBatchItemFailures: true,
      enabled: config.enabled ?? true,
      ...(config.maxConcurrency !== undefined ? { maxConcurrency: config.maxConcurrency } : {}),
    });
    this.function.addEventSource(this.eventSource);

    this.alarms = this.#alarms(config, namePrefix, props.alarmTopic);
  }

  /** Seconds the replica is behind: the applier's own lag, or the age of the oldest waiting message when nothing is applied. */
  lagExpression(): MathExpression {
    return new MathExpression({
      label: `${this.replicaName} lag (s)`,
      expression: 'MAX([FILL(lag, 0), FILL(age, 0)])',
      usingMetrics: {
        lag: applierMetric(this.replicaName, this.deployment, METRICS.applier.applyLagSeconds, { statistic: 'Maximum' }),
        age: this.queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(1) }),
      },
      period: Duration.minutes(1),
    });
  }

  /** Dashboard widgets of this replica: one row of four. */
  widgets(): IWidget[] {
    const name = this.replicaName;
    const minute = { period: Duration.minutes(1) };
    const changes = applierMetric(name, this.deployment, METRICS.applier.changesApplied, { statistic: 'Sum' });
    return [
      new GraphWidget({
        title: `${name}: lag (s)`,
        width: 6,
        left: [
          applierMetric(name, this.deployment, METRICS.applier.applyLagSeconds, { statistic: 'Maximum', label: 'replica lag' }),
          this.queue.metricApproximateAgeOfOldestMessage({ ...minute, statistic: 'Maximum', label: 'age of oldest message' }),
        ],
        leftAnnotations: [{ value: this.lagAlarmSeconds, label: 'lag alarm' }],
      }),
      new GraphWidget({
        title: `${name}: applied changes per second`,
        width: 6,
        left: [new MathExpression({ expression: 'changes / PERIOD(changes)', usingMetrics: { changes }, label: 'changes/s', ...minute })],
      }),
      new GraphWidget({
        title: `${name}: queue`,
        width: 6,
        left: [
          this.queue.metricApproximateNumberOfMessagesVisible({ ...minute, statistic: 'Maximum', label: 'waiting' }),
          this.queue.metricApproximateNumberOfMessagesNotVisible({ ...minute, statistic: 'Maximum', label: 'in flight' }),
          this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...minute, statistic: 'Maximum', label: 'dead letters' }),
          this.deliveryDeadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...minute, statistic: 'Maximum', label: 'undelivered by SNS' }),
        ],
      }),
      new GraphWidget({
        title: `${name}: applier`,
        width: 6,
        left: [
          this.function.metricErrors({ ...minute, statistic: 'Sum', label: 'errors' }),
          this.function.metricThrottles({ ...minute, statistic: 'Sum', label: 'throttles' }),
          applierMetric(name, this.deployment, METRICS.applier.gapsDetected, { statistic: 'Sum', label: 'gaps' }),
          applierMetric(name, this.deployment, METRICS.applier.messagesRefused, { statistic: 'Sum', label: 'refused' }),
        ],
        right: [
          this.function.metricDuration({ ...minute, statistic: 'p99', label: 'duration p99 (ms)' }),
          this.function.metricDuration({ ...minute, statistic: 'Average', label: 'duration avg (ms)' }),
        ],
      }),
    ];
  }

  #alarms(config: ReplicaConfig, prefix: string, alarmTopic: ITopic | undefined): ReplicaAlarms {
    const name = config.name;
    const lagSeconds = this.lagAlarmSeconds;
    const alarm = (
      id: string,
      metric: IMetric,
      props: { readonly suffix: string; readonly description: string; readonly threshold: number; readonly evaluationPeriods: number; readonly missing: TreatMissingData; readonly notifyRecovery: boolean },
    ): Alarm => {
      const created = new Alarm(this, id, {
        alarmName: `${prefix}-${name}-${props.suffix}`,
        alarmDescription: props.description,
        metric,
        threshold: props.threshold,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: props.evaluationPeriods,
        treatMissingData: props.missing,
      });
      if (alarmTopic) {
        created.addAlarmAction(new SnsAction(alarmTopic));
        // Only alarms on metrics that arrive every minute notify their recovery: on a sparse
        // metric (errors, gaps) every quiet minute would otherwise be an OK notification.
        if (props.notifyRecovery) created.addOkAction(new SnsAction(alarmTopic));
      }
      return created;
    };
    return {
      deadLetters: alarm('DeadLettersAlarm', this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' }), {
        suffix: 'dead-letters',
        description: `pgfanout replica ${name}: a message failed ${config.maxReceiveCount ?? DEFAULTS.maxReceiveCount} times and was parked in ${deadLetterQueueName(prefix, name)}. The replica stops at the gap it leaves. Read the applier's logs for the reason, fix it, then redrive the dead-letter queue to ${queueName(prefix, name)}.`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: true,
      }),
      undelivered: alarm('UndeliveredAlarm', this.deliveryDeadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' }), {
        suffix: 'undelivered',
        description: `pgfanout replica ${name}: SNS could not deliver messages to ${queueName(prefix, name)} (queue policy, KMS key, or the queue gone) and put them in ${deliveryDeadLetterQueueName(prefix, name)}. The replica stops at the gap. Fix the cause, then move the messages into ${queueName(prefix, name)} with their message group and deduplication ids.`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: true,
      }),
      lag: alarm('LagAlarm', this.lagExpression(), {
        suffix: 'lag',
        description: `pgfanout replica ${name} is more than ${lagSeconds} s behind the source (replica lag, or the age of the oldest message waiting in its queue). Check the applier's errors and throttles, the replica database, and the publisher.`,
        threshold: lagSeconds,
        evaluationPeriods: 3,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: true,
      }),
      errors: alarm('ErrorsAlarm', this.function.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }), {
        suffix: 'applier-errors',
        description: `pgfanout replica ${name}: the applier function failed (timeouts, crashes, a database it cannot reach). Read its logs; failed batches are retried, then parked in the dead-letter queue.`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: false,
      }),
      permanentFailures: alarm('PermanentFailuresAlarm', applierMetric(name, this.deployment, METRICS.applier.permanentFailures, { statistic: 'Sum' }), {
        suffix: 'permanent-failures',
        description: `pgfanout replica ${name}: the applier stopped at a message that fails for a permanent reason (a poison message, a schema that does not match, a gap). The replica waits at it; the applier retries it every few minutes. Read the applier's logs for the message and the error, fix the cause on the replica (or skip the batch with pgfanout redrive).`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: false,
      }),
      oldestMessage: alarm('OldestMessageAlarm', this.queue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(5), statistic: 'Maximum' }), {
        suffix: 'oldest-message',
        description: `pgfanout replica ${name}: a message has waited in ${queueName(prefix, name)} for more than ${config.oldestMessageAlarmSeconds ?? DEFAULTS.oldestMessageAlarmSeconds} s. SQS deletes messages 14 days after they were sent, and a deleted message is a gap this replica cannot cross without a new bootstrap: find why the replica does not apply (paused, failing, unreachable) long before that.`,
        threshold: config.oldestMessageAlarmSeconds ?? DEFAULTS.oldestMessageAlarmSeconds,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: true,
      }),
      gaps: alarm('GapsAlarm', applierMetric(name, this.deployment, METRICS.applier.gapsDetected, { statistic: 'Sum' }), {
        suffix: 'gap',
        description: `pgfanout replica ${name}: the applier received a change whose predecessor it has not applied and stopped rather than apply past it. Usually the predecessor is in the dead-letter queue: fix its cause and redrive it.`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: false,
      }),
      refused: alarm('RefusedAlarm', applierMetric(name, this.deployment, METRICS.applier.messagesRefused, { statistic: 'Sum' }), {
        suffix: 'refused',
        description: `pgfanout replica ${name}: the applier refused a message and stopped (a source it does not follow, a write to pgfanout's own tables, a batch that jumps or differs from the one applied under its id, a source that went back in time, a schema change it may not run, or schema drift on the source). The applier's log names the reason; nothing was applied.`,
        threshold: 0,
        evaluationPeriods: 1,
        missing: TreatMissingData.NOT_BREACHING,
        notifyRecovery: false,
      }),
    };
  }
}

/** esbuild settings of the applier bundle: one ESM file for Node 24, everything bundled. */
export function applierBundling() {
  return {
    forceDockerBundling: false,
    format: OutputFormat.ESM,
    target: 'node24',
    minify: true,
    sourceMap: true,
    // Bundle the AWS SDK too, so the function runs the versions the tests ran.
    externalModules: ['pg-native'],
    mainFields: ['module', 'main'],
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: "import { createRequire as __pgfanoutCreateRequire } from 'node:module'; const require = __pgfanoutCreateRequire(import.meta.url);",
  };
}
