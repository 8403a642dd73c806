/**
 * The publisher: one always-on ECS Fargate task that reads the source's event log in
 * commit order and publishes it to the SNS FIFO topic.
 */
import { Duration, Fn, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, GraphWidget, Metric, TreatMissingData, type IWidget } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import {
  Cluster,
  ContainerInsights,
  CpuArchitecture,
  FargatePlatformVersion,
  FargateService,
  FargateTaskDefinition,
  LogDrivers,
  OperatingSystemFamily,
  Secret as EcsSecret,
  type ContainerDefinition,
  type ContainerImage,
} from 'aws-cdk-lib/aws-ecs';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { METRICS, PUBLISHER_ENV } from '#core/config.ts';
import { DEFAULTS, type PublisherOptions } from './config.ts';
import { publisherMetric, publisherRate } from './metrics.ts';
import { grantSecretKeyDecrypt, grantSigningKeyRead } from './secrets.ts';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { acknowledgeLogGroupControls } from './guard.ts';

/** Properties of {@link PgfanoutPublisher}. */
export interface PgfanoutPublisherProps {
  /** VPC the task runs in. */
  readonly vpc: IVpc;
  /** Subnets of `vpc` for the task. @default the VPC's private subnets */
  readonly vpcSubnets?: SubnetSelection;
  /** Security groups of the task. */
  readonly securityGroups: readonly ISecurityGroup[];
  /**
   * The SNS FIFO topics to publish to, one per topic shard (the first is shard 0's): the
   * publisher publishes every message to each.
   */
  readonly topics: readonly ITopic[];
  /** The source database's secret, injected into the container by ECS. */
  readonly sourceSecret: ISecret;
  /** ARN of the customer-managed KMS key of the source secret. @default the AWS-managed key */
  readonly sourceSecretKeyArn?: string;
  /** The secret holding the message signing key; the task signs with its current version. */
  readonly signingKey: ISecret;
  /** The KMS key that encrypts `signingKey`. */
  readonly signingKeyEncryptionKey: IKey;
  /** The publisher's container image. */
  readonly image: ContainerImage;
  /** Task settings (validated by the caller). */
  readonly options: PublisherOptions;
  /** Retention of the publisher's logs. */
  readonly logRetention: RetentionDays;
  /** Topic the alarms notify. @default alarms notify no one */
  readonly alarmTopic?: ITopic;
  /** Prefix of the alarm names. */
  readonly namePrefix: string;
}

/** Properties of {@link PublisherMonitoring}. */
export interface PublisherMonitoringProps {
  /** Seconds the oldest unpublished event may wait before the stalled alarm fires. */
  readonly stalledAlarmSeconds: number;
  /** Topic the alarm notifies. @default no one */
  readonly alarmTopic?: ITopic;
  /** Prefix of the alarm name. */
  readonly namePrefix: string;
}

/**
 * What the publisher reports, wherever it runs (the Fargate service, or a process of
 * your own): the stalled alarm and the dashboard widgets of its metrics.
 */
export class PublisherMonitoring extends Construct {
  /** Events have waited in the source's log longer than the threshold without being published. */
  readonly stalled: Alarm;
  /** No publisher heartbeat: no publisher process runs. */
  readonly silent: Alarm;
  /** The threshold of `stalled`, in seconds. */
  readonly stalledAlarmSeconds: number;
  /** The `Deployment` metric dimension: the name prefix. */
  readonly deployment: string;

  constructor(scope: Construct, id: string, props: PublisherMonitoringProps) {
    super(scope, id);
    this.stalledAlarmSeconds = props.stalledAlarmSeconds;
    this.deployment = props.namePrefix;
    this.stalled = new Alarm(this, 'StalledAlarm', {
      alarmName: `${props.namePrefix}-publisher-stalled`,
      alarmDescription: `pgfanout publisher: events have waited in the source's log for more than ${props.stalledAlarmSeconds} s without being published, or no publisher holds the lock to report it (cannot reach the source, not running). Check the publisher logs (database connection, advisory lock held elsewhere, SNS errors) and the publish errors on the dashboard.`,
      metric: publisherMetric(this.deployment, METRICS.publisher.oldestUnpublishedSeconds, { statistic: 'Maximum' }),
      threshold: props.stalledAlarmSeconds,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      // Only the active publisher, connected and holding the lock, reports the oldest event (every
      // 10 s): no data means nothing is being published, which is the condition this alarm is for.
      treatMissingData: TreatMissingData.BREACHING,
    });
    this.silent = new Alarm(this, 'SilentAlarm', {
      alarmName: `${props.namePrefix}-publisher-silent`,
      alarmDescription:
        'pgfanout publisher: no heartbeat for 3 minutes, so no publisher process is running (or none can write its logs). Changes accumulate safely in the source event log. Check the ECS service (or wherever the publisher runs) and its logs.',
      metric: publisherMetric(this.deployment, METRICS.publisher.heartbeat, { statistic: 'SampleCount' }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: TreatMissingData.BREACHING,
    });
    if (props.alarmTopic) {
      // Both metrics arrive continuously while a publisher runs, so their recovery is news too.
      for (const alarm of [this.stalled, this.silent]) {
        alarm.addAlarmAction(new SnsAction(props.alarmTopic));
        alarm.addOkAction(new SnsAction(props.alarmTopic));
      }
    }
  }

  /** Events per second, lag, and the oldest unpublished event. */
  widgets(): IWidget[] {
    return [
      new GraphWidget({
        title: 'publisher: events per second',
        width: 6,
        left: [publisherRate(this.deployment, METRICS.publisher.eventsPublished, 'events/s'), publisherRate(this.deployment, METRICS.publisher.messagesPublished, 'messages/s')],
      }),
      new GraphWidget({
        title: 'publisher: lag (s)',
        width: 6,
        left: [publisherMetric(this.deployment, METRICS.publisher.publishLagSeconds, { statistic: 'Maximum', label: 'commit to publish' })],
      }),
      new GraphWidget({
        title: 'publisher: oldest unpublished event (s)',
        width: 6,
        left: [publisherMetric(this.deployment, METRICS.publisher.oldestUnpublishedSeconds, { statistic: 'Maximum', label: 'oldest unpublished' })],
        leftAnnotations: [{ value: this.stalledAlarmSeconds, label: 'stalled alarm' }],
      }),
    ];
  }

  /** Publish errors, for a dashboard without the service's task metrics. */
  errorsWidget(): IWidget {
    return new GraphWidget({ title: 'publisher: publish errors', width: 6, left: [publisherErrors(this.deployment)], right: [heartbeats(this.deployment)] });
  }
}

function publisherErrors(deployment: string): Metric {
  return publisherMetric(deployment, METRICS.publisher.publishErrors, { statistic: 'Sum', label: 'publish errors' });
}

function heartbeats(deployment: string): Metric {
  return publisherMetric(deployment, METRICS.publisher.heartbeat, { statistic: 'SampleCount', label: 'heartbeats' });
}

/** The alarms of the publisher service. */
export interface PublisherAlarms {
  /** No publisher task is running. */
  readonly notRunning: Alarm;
}

/** The publisher's ECS cluster, task definition, Fargate service, logs and alarms. */
export class PgfanoutPublisher extends Construct {
  /** The ECS cluster (Container Insights on, for the task-count metrics). */
  readonly cluster: Cluster;
  /** The task definition (ARM64, Linux). */
  readonly taskDefinition: FargateTaskDefinition;
  /** The publisher container. */
  readonly container: ContainerDefinition;
  /** The Fargate service: one task, never two on purpose. */
  readonly service: FargateService;
  /** The container's log group. */
  readonly logGroup: LogGroup;
  /** The publisher service's alarms. */
  readonly alarms: PublisherAlarms;
  /** The `Deployment` metric dimension: the name prefix. */
  readonly deployment: string;

  constructor(scope: Construct, id: string, props: PgfanoutPublisherProps) {
    super(scope, id);
    const options = props.options;
    const healthPort = options.healthPort ?? DEFAULTS.healthPort;

    this.cluster = new Cluster(this, 'Cluster', { vpc: props.vpc, containerInsightsV2: ContainerInsights.ENABLED });
    this.logGroup = new LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    acknowledgeLogGroupControls(this.logGroup);

    this.taskDefinition = new FargateTaskDefinition(this, 'Task', {
      cpu: options.cpu ?? DEFAULTS.publisherCpu,
      memoryLimitMiB: options.memoryMiB ?? DEFAULTS.publisherMemoryMiB,
      runtimePlatform: { cpuArchitecture: CpuArchitecture.ARM64, operatingSystemFamily: OperatingSystemFamily.LINUX },
    });
    this.container = this.taskDefinition.addContainer('Publisher', {
      image: props.image,
      essential: true,
      // The image's own user (functions/publisher/Dockerfile), never root; the publisher writes no
      // file, so the root filesystem is read-only; the container's hard memory limit is the task's
      // (Control Tower's controls CT.ECS.PR.3, CT.ECS.PR.6 and CT.ECS.PR.7).
      user: 'node',
      readonlyRootFilesystem: true,
      memoryLimitMiB: options.memoryMiB ?? DEFAULTS.publisherMemoryMiB,
      logging: LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'publisher' }),
      // Credentials come only from Secrets Manager; the environment holds plain settings.
      secrets: { [PUBLISHER_ENV.SOURCE_SECRET]: EcsSecret.fromSecretsManager(props.sourceSecret) },
      environment: {
        // One ARN, or every shard's, comma-separated.
        [PUBLISHER_ENV.TOPIC_ARN]: props.topics.length === 1 ? (props.topics[0] as ITopic).topicArn : Fn.join(',', props.topics.map((t) => t.topicArn)),
        [PUBLISHER_ENV.HEALTH_PORT]: String(healthPort),
        [PUBLISHER_ENV.LOG_LEVEL]: options.logLevel ?? DEFAULTS.publisherLogLevel,
        [PUBLISHER_ENV.DB_TLS]: options.databaseTls ?? 'verify-full',
        [PUBLISHER_ENV.DEPLOYMENT]: props.namePrefix,
        [PUBLISHER_ENV.SIGNING_KEY_SECRET]: props.signingKey.secretArn,
        ...(options.tickMs !== undefined ? { [PUBLISHER_ENV.TICK_MS]: String(options.tickMs) } : {}),
      },
      healthCheck: {
        // The image has Node and no curl: ask the health endpoint with Node's fetch.
        command: [
          'CMD',
          'node',
          '-e',
          `fetch('http://127.0.0.1:${healthPort}/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
        ],
        // The endpoint fails after 30 s without progress (functions/publisher/health.ts); two
        // failed checks 10 s apart then replace the task, within a minute of it getting stuck.
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        retries: 2,
        startPeriod: Duration.seconds(60),
      },
      // The publisher stops within 20 s of SIGTERM; an unfinished batch is served again to the next one.
      stopTimeout: Duration.seconds(30),
    });
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The environment holds only non-secret settings (topic ARN, health port, log level, tick); the source credentials are injected from Secrets Manager through the container secrets.',
    });
    // What topic.grantPublish would grant, without its kms:GenerateDataKey* wildcard.
    this.taskDefinition.addToTaskRolePolicy(new PolicyStatement({ actions: ['sns:Publish'], resources: props.topics.map((t) => t.topicArn) }));
    const keyArns = [...new Set(props.topics.flatMap((t) => (t.masterKey ? [t.masterKey.keyArn] : [])))];
    if (keyArns.length > 0) {
      this.taskDefinition.addToTaskRolePolicy(new PolicyStatement({ actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: keyArns }));
    }

    grantSigningKeyRead(props.signingKey, props.signingKeyEncryptionKey, this.taskDefinition.taskRole);

    this.service = new FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: 1,
      // Start the new task before stopping the old one: the new one stands by on the source's
      // advisory lock and takes over within its lock poll (one second) of the old one's exit,
      // instead of publishing nothing while ECS stops one task and then starts another.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      platformVersion: FargatePlatformVersion.LATEST,
      vpcSubnets: props.vpcSubnets ?? {},
      securityGroups: [...props.securityGroups],
      assignPublicIp: false,
      enableExecuteCommand: false,
    });

    const execution = this.taskDefinition.obtainExecutionRole();
    // ECS grants the execution role the secret itself when it injects it.
    grantSecretKeyDecrypt(props.sourceSecret, { ...(props.sourceSecretKeyArn ? { secretKeyArn: props.sourceSecretKeyArn } : {}) }, execution);
    Validations.of(execution).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ECS pulls the image from ECR with ecr:GetAuthorizationToken, an action that supports no resource scoping.',
    });

    this.deployment = props.namePrefix;
    this.alarms = this.#alarms(props.namePrefix, props.alarmTopic);
  }

  /** Running tasks, from Container Insights. */
  runningTasks(statistic = 'Minimum'): Metric {
    return this.#insightsMetric('RunningTaskCount', statistic);
  }

  /** Task health: running and pending tasks, publish errors, CPU and memory. */
  widgets(): IWidget[] {
    return [
      new GraphWidget({
        title: 'publisher: task health',
        width: 6,
        left: [this.runningTasks('Minimum'), this.#insightsMetric('PendingTaskCount', 'Maximum'), publisherErrors(this.deployment), heartbeats(this.deployment)],
        right: [this.service.metricCpuUtilization({ period: Duration.minutes(1), label: 'CPU %' }), this.service.metricMemoryUtilization({ period: Duration.minutes(1), label: 'memory %' })],
      }),
    ];
  }

  #insightsMetric(name: string, statistic: string): Metric {
    return new Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: name,
      dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: this.service.serviceName },
      statistic,
      period: Duration.minutes(1),
      label: name,
    });
  }

  #alarms(prefix: string, alarmTopic: ITopic | undefined): PublisherAlarms {
    const notRunning = new Alarm(this, 'NotRunningAlarm', {
      alarmName: `${prefix}-publisher-not-running`,
      alarmDescription:
        'pgfanout publisher: no task has been running for 3 minutes, so nothing is published (changes keep accumulating safely in the source event log). Check the ECS service events (failed deployment, image pull, secret access) and the publisher logs.',
      metric: this.runningTasks('Minimum'),
      threshold: 1,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      // No data means no task reported: that is the condition this alarm exists for.
      treatMissingData: TreatMissingData.BREACHING,
    });
    if (alarmTopic) {
      notRunning.addAlarmAction(new SnsAction(alarmTopic));
      notRunning.addOkAction(new SnsAction(alarmTopic));
    }
    return { notRunning };
  }
}
