/**
 * `Pgfanout`: the whole deployment as one L3 construct, usable from any CDK app.
 *
 * A customer-managed KMS key; the SNS FIFO topic only the publisher may publish to; the
 * publisher's Fargate service; per replica a nested stack with its queue, dead-letter
 * queue, applier function, event source and alarms (a nested stack each, so that a
 * stack of 100 replicas stays under CloudFormation's 500 resources per template); an
 * alarm topic with an optional email subscription; one dashboard.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, Aws, CfnCondition, Duration, Fn, IgnoreMode, NestedStack, RemovalPolicy, Stack, Tags, Token, Validations } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, Dashboard, TextWidget, TreatMissingData, type IWidget } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { FlowLogDestination, FlowLogTrafficType, IpAddresses, SecurityGroup, SubnetType, Vpc, type ISecurityGroup, type IVpc, type SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { AccountRootPrincipal, AnyPrincipal, Effect, ManagedPolicy, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CfnSubscription, Subscription, SubscriptionProtocol, Topic } from 'aws-cdk-lib/aws-sns';
import type { ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { ENTRY_POINTS } from '#core/config.ts';
import { DEFAULTS, replicaShard, shardsInUse, topicName, validatePgfanoutConfig, type PublisherOptions, type ReplicaConfig, type SourceConfig } from './config.ts';
import { PgfanoutPublisher, PublisherMonitoring } from './publisher.ts';
import { PgfanoutReplica } from './replica.ts';
import { resolveSecret, signingKeySecret } from './secrets.ts';
import { acknowledgeLogGroupControls } from './guard.ts';

/** The repository root: package.json, package-lock.json and the deployables live under it. */
export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

/** Path of the publisher's Dockerfile, relative to the project root. */
export const PUBLISHER_DOCKERFILE = 'functions/publisher/Dockerfile';

/** Tag carrying the deployment's name prefix on every replica resource (queues, function, event source mapping). */
const DEPLOYMENT_TAG = 'pgfanout:deployment';

/**
 * The operator's permissions, least privilege for what `pgfanout status`, `pgfanout redrive`
 * (list, move back, skip) and pausing a replica call
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html):
 * queues are matched by name (`<prefix>-<replica>.fifo`, `<prefix>-<replica>-dlq.fifo`; a
 * deployment whose prefix starts with `<prefix>-` would match too), event source mappings,
 * whose ids are generated, by the {@link DEPLOYMENT_TAG} tag
 * (https://docs.aws.amazon.com/lambda/latest/dg/tags-esm.html). Pausing a replica is
 * `UpdateEventSourceMapping` with `Enabled: false` on its mapping.
 */
function operatorStatements(stack: Stack, prefix: string, keyArn: string): PolicyStatement[] {
  const sqs = (name: string) => stack.formatArn({ service: 'sqs', resource: name });
  return [
    new PolicyStatement({ sid: 'Status', actions: ['sqs:GetQueueUrl', 'sqs:GetQueueAttributes'], resources: [sqs(`${prefix}-*.fifo`)] }),
    new PolicyStatement({
      sid: 'ListAndRedriveDeadLetters',
      actions: ['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:StartMessageMoveTask', 'sqs:ListMessageMoveTasks', 'sqs:CancelMessageMoveTask'],
      resources: [sqs(`${prefix}-*-dlq.fifo`)],
    }),
    // A message move task sends into the destination queue with the caller's permissions.
    new PolicyStatement({ sid: 'RedriveIntoTheQueues', actions: ['sqs:SendMessage'], resources: [sqs(`${prefix}-*.fifo`)] }),
    new PolicyStatement({ sid: 'EncryptedMessages', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [keyArn] }),
    new PolicyStatement({ sid: 'FindTheMappings', actions: ['lambda:ListEventSourceMappings'], resources: ['*'] }),
    new PolicyStatement({
      sid: 'PauseAndResume',
      actions: ['lambda:GetEventSourceMapping', 'lambda:UpdateEventSourceMapping'],
      resources: [stack.formatArn({ service: 'lambda', resource: 'event-source-mapping', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
      conditions: { StringEquals: { [`aws:ResourceTag/${DEPLOYMENT_TAG}`]: prefix } },
    }),
    // redrive's dry runs read the applier's settings from its function's environment; Lambda
    // authorizes function actions by resource tag
    // (https://docs.aws.amazon.com/lambda/latest/dg/attribute-based-access-control.html).
    new PolicyStatement({
      sid: 'ReadApplierSettings',
      actions: ['lambda:GetFunctionConfiguration'],
      resources: [stack.formatArn({ service: 'lambda', resource: 'function', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
      conditions: { StringEquals: { [`aws:ResourceTag/${DEPLOYMENT_TAG}`]: prefix } },
    }),
  ];
}

/** Properties of {@link Pgfanout}. */
export interface PgfanoutProps {
  /** The source database. Required unless `publisherService` is false. */
  readonly source?: SourceConfig;
  /**
   * The replicas, at most 400: one SNS FIFO subscription each, at most 100 per topic shard
   * (see {@link ReplicaConfig.shard}).
   */
  readonly replicas: readonly ReplicaConfig[];
  /**
   * VPC the publisher and the appliers run in; they need to reach the databases and,
   * through NAT or VPC endpoints, SNS, SQS, Secrets Manager, ECR and CloudWatch Logs.
   * @default a new VPC over two availability zones with one NAT gateway
   */
  readonly vpc?: IVpc;
  /** Subnets for the publisher and the appliers. @default the VPC's private subnets */
  readonly vpcSubnets?: SubnetSelection;
  /**
   * Security groups of the publisher and the appliers.
   * @default one new group for the publisher and one for the appliers, outbound only: allow them in on the databases' groups
   */
  readonly securityGroups?: readonly ISecurityGroup[];
  /**
   * Email address the alarm topic notifies; empty for none. May be a token (a stack
   * parameter), in which case the subscription exists only when the value is not empty.
   * @default no email subscription
   */
  readonly alarmEmail?: string;
  /** Prefix of the topic, queue, alarm and dashboard names. @default the stack name */
  readonly namePrefix?: string;
  /** Publisher task and alarm settings. @default 0.25 vCPU, 512 MiB */
  readonly publisher?: PublisherOptions;
  /**
   * Deploy the publisher as an ECS Fargate service. Without it, run the publisher yourself
   * (`pgfanout publisher`, e.g. next to LocalStack, whose free edition has no ECS) with an
   * identity that may publish to the topic; the topic then takes publishes from any
   * principal its IAM policies allow, over TLS only.
   * @default true
   */
  readonly publisherService?: boolean;
  /** The publisher's image. @default built from functions/publisher/Dockerfile for linux/arm64 */
  readonly publisherImage?: ContainerImage;
  /** The applier's handler module. @default functions/applier/handler.ts under the project root */
  readonly applierEntry?: string;
  /** Folder with package.json and package-lock.json. @default this repository's root */
  readonly projectRoot?: string;
  /** Retention of every log group. @default one month */
  readonly logRetention?: RetentionDays;
  /**
   * What happens to the replica queues (and the messages in them), their dead-letter queues and
   * the KMS key when they leave the stack. Retained, a removed replica's queues stay (delete them
   * by hand, or import them, before adding a replica of that name again).
   * @default RemovalPolicy.RETAIN
   */
  readonly dataRemovalPolicy?: RemovalPolicy;
}

/** The pgfanout deployment: topic, publisher, replicas, alarms and dashboard. */
export class Pgfanout extends Construct {
  /** Prefix of the resource names. */
  readonly namePrefix: string;
  /** Customer-managed key of the topic, the queues and the alarm topic. */
  readonly encryptionKey: Key;
  /** The SNS FIFO topic of shard 0 (`<prefix>.fifo`), the only one up to 100 replicas. */
  readonly topic: Topic;
  /**
   * The FIFO topic of each shard in use, by shard number (0 is {@link topic}). The publisher
   * publishes every message to each; each replica's queue subscribes to the topic of its shard.
   */
  readonly topics: ReadonlyMap<number, Topic>;
  /** Topic the alarms notify. */
  readonly alarmTopic: Topic;
  /** The VPC everything runs in. */
  readonly vpc: IVpc;
  /** Security groups of the publisher. */
  readonly publisherSecurityGroups: readonly ISecurityGroup[];
  /** Security groups of the appliers. */
  readonly applierSecurityGroups: readonly ISecurityGroup[];
  /** The source database's secret, when a source is given. */
  readonly sourceSecret: ISecret | undefined;
  /**
   * The secret holding the message signing key: the publisher signs every message with its
   * AWSCURRENT version, the appliers accept AWSCURRENT and AWSPREVIOUS. A publisher run outside
   * the stack needs `secretsmanager:GetSecretValue` on it and `kms:Decrypt` on {@link encryptionKey}.
   */
  readonly signingKey: Secret;
  /** The publisher service, unless `publisherService` is false. */
  readonly publisher: PgfanoutPublisher | undefined;
  /** The publisher's stalled alarm and metric widgets. */
  readonly publisherMonitoring: PublisherMonitoring;
  /** The replicas by name, in the order given. */
  readonly replicas: ReadonlyMap<string, PgfanoutReplica>;
  /** The nested stack of each replica, by name (a replica of shard N > 0 is nested in {@link shardStacks}' N). */
  readonly replicaStacks: ReadonlyMap<string, NestedStack>;
  /** The nested stack of each shard but 0, by shard number: its topic, its replicas, its dashboard and alarm. */
  readonly shardStacks: ReadonlyMap<number, NestedStack>;
  /** The CloudWatch dashboard: the publisher and the replicas of shard 0. */
  readonly dashboard: Dashboard;
  /**
   * One dashboard per shard, by shard number (0 is {@link dashboard}): a dashboard holds at
   * most 500 widgets, and a replica's row is four.
   */
  readonly dashboards: ReadonlyMap<number, Dashboard>;
  /** SNS could neither deliver a message of shard 0's topic to a replica queue nor park it in the delivery dead-letter queue. */
  readonly notificationsLostAlarm: Alarm;
  /** {@link notificationsLostAlarm} of each shard's topic, by shard number. */
  readonly notificationsLostAlarms: ReadonlyMap<number, Alarm>;
  /**
   * The role operators assume for `pgfanout status`, `redrive` and pausing a replica: the only
   * principal besides the topic that may send to the replica queues. Any principal of the
   * account that is allowed sts:AssumeRole on it may assume it.
   */
  readonly operatorRole: Role;
  /** What {@link operatorRole} may do, and nothing more (see {@link operatorStatements}). */
  readonly operatorPolicy: ManagedPolicy;

  constructor(scope: Construct, id: string, props: PgfanoutProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.namePrefix = props.namePrefix ?? stack.stackName;
    validatePgfanoutConfig({
      source: props.source,
      replicas: props.replicas,
      namePrefix: this.namePrefix,
      ...(props.publisherService !== undefined ? { publisherService: props.publisherService } : {}),
      ...(props.publisher !== undefined ? { publisher: props.publisher } : {}),
      ...(props.alarmEmail !== undefined ? { alarmEmail: props.alarmEmail } : {}),
    });
    const projectRoot = props.projectRoot ?? PROJECT_ROOT;
    const logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const dataRemovalPolicy = props.dataRemovalPolicy ?? RemovalPolicy.RETAIN;

    this.encryptionKey = new Key(this, 'Key', {
      description: `pgfanout ${this.namePrefix}: the topic, the replica queues and the alarm topic`,
      enableKeyRotation: true,
      removalPolicy: dataRemovalPolicy,
      pendingWindow: Duration.days(30),
    });
    // Grants on the key only for AWS services acting on AWS resources (SQS, SNS, Lambda), never
    // a grant a principal of the account makes for itself, which would outlive any policy change
    // (Control Tower's control CT.KMS.PR.3;
    // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-grant-is-for-aws-resource).
    this.encryptionKey.addToResourcePolicy(
      new PolicyStatement({
        sid: 'GrantsOnlyForAwsResources',
        effect: Effect.DENY,
        principals: [new AnyPrincipal()],
        actions: ['kms:CreateGrant'],
        resources: ['*'],
        conditions: { BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' } },
      }),
    );
    // This stack's alarms, and only they, notify the alarm topic: every alarm is named
    // `<prefix>-…`. Scoping a service principal by aws:SourceAccount and aws:SourceArn is what
    // SNS documents against the confused deputy
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html).
    const alarmArns = stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: `${this.namePrefix}-*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const fromOurAlarms = { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID }, ArnLike: { 'aws:SourceArn': alarmArns } };
    // CloudWatch publishes alarm notifications to the encrypted alarm topic, which needs the key
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
    this.encryptionKey.addToResourcePolicy(
      new PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToTheAlarmTopic',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: fromOurAlarms,
      }),
    );

    const topics = new Map<number, Topic>();
    // Shard 0 lives in this stack, as the only topic always has. Every further shard is one nested
    // stack holding its topic, its replicas' nested stacks, its dashboard and its alarm: the parent
    // template grows by one resource per shard, not by each replica's resource and dashboard row
    // (CloudFormation takes a template of at most 1 MB).
    const shardStacks = new Map<number, NestedStack>();
    for (const shard of shardsInUse(props.replicas)) {
      if (shard > 0) shardStacks.set(shard, new NestedStack(this, `Shard${shard}`, { description: `pgfanout ${this.namePrefix}: topic shard ${shard} and its replicas` }));
      topics.set(shard, this.#shardTopic(shardStacks.get(shard) ?? this, stack, shard));
    }
    this.topics = topics;
    this.shardStacks = shardStacks;
    this.topic = topics.get(0) as Topic;
    this.alarmTopic = new Topic(this, 'AlarmTopic', {
      displayName: `pgfanout ${this.namePrefix} alarms`,
      masterKey: this.encryptionKey,
      enforceSSL: true,
    });
    // A topic policy replaces SNS's default one, and enforceSSL creates one holding only its
    // TLS deny; SnsAction adds no permission. Without this statement CloudWatch "is not authorized
    // to perform: SNS:Publish" and no alarm notification arrives
    // (https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger).
    this.alarmTopic.addToResourcePolicy(
      new PolicyStatement({
        sid: 'CloudWatchAlarmsOfThisStackPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.alarmTopic.topicArn],
        conditions: fromOurAlarms,
      }),
    );
    this.#subscribeEmail(props.alarmEmail);

    this.vpc = props.vpc ?? this.#newVpc(logRetention);
    if (props.securityGroups && props.securityGroups.length > 0) {
      this.publisherSecurityGroups = props.securityGroups;
      this.applierSecurityGroups = props.securityGroups;
    } else {
      this.publisherSecurityGroups = props.publisherService === false ? [] : [
        new SecurityGroup(this, 'PublisherSecurityGroup', {
          vpc: this.vpc,
          description: `pgfanout ${this.namePrefix} publisher: outbound to the source database and AWS APIs`,
          allowAllOutbound: true,
        }),
      ];
      this.applierSecurityGroups = [
        new SecurityGroup(this, 'ApplierSecurityGroup', {
          vpc: this.vpc,
          description: `pgfanout ${this.namePrefix} appliers: outbound to the replica databases and AWS APIs`,
          allowAllOutbound: true,
        }),
      ];
    }

    this.sourceSecret = props.source ? resolveSecret(this, 'SourceSecret', props.source) : undefined;
    this.signingKey = signingKeySecret(this, 'SigningKey', { namePrefix: this.namePrefix, key: this.encryptionKey, removalPolicy: dataRemovalPolicy });
    this.publisherMonitoring = new PublisherMonitoring(this, 'PublisherMonitoring', {
      stalledAlarmSeconds: props.publisher?.stalledAlarmSeconds ?? DEFAULTS.stalledAlarmSeconds,
      alarmTopic: this.alarmTopic,
      namePrefix: this.namePrefix,
    });
    this.publisher =
      props.publisherService === false || !this.sourceSecret || !props.source
        ? undefined
        : new PgfanoutPublisher(this, 'Publisher', {
            vpc: this.vpc,
            ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
            securityGroups: this.publisherSecurityGroups,
            topics: [...this.topics.values()],
            sourceSecret: this.sourceSecret,
            signingKey: this.signingKey,
            signingKeyEncryptionKey: this.encryptionKey,
            ...(props.source.secretKeyArn ? { sourceSecretKeyArn: props.source.secretKeyArn } : {}),
            image:
              props.publisherImage ??
              ContainerImage.fromAsset(projectRoot, {
                file: PUBLISHER_DOCKERFILE,
                platform: Platform.LINUX_ARM64,
                ignoreMode: IgnoreMode.DOCKER,
              }),
            options: props.publisher ?? {},
            logRetention,
            alarmTopic: this.alarmTopic,
            namePrefix: this.namePrefix,
          });
    if (this.publisher) {
      // Every shard's topic has the same policy: only the publisher's task role publishes.
      for (const topic of this.topics.values()) {
        topic.addToResourcePolicy(
          new PolicyStatement({
            sid: 'OnlyThePublisherPublishes',
            effect: Effect.DENY,
            principals: [new AnyPrincipal()],
            actions: ['sns:Publish'],
            resources: [topic.topicArn],
            conditions: { ArnNotEquals: { 'aws:PrincipalArn': this.publisher.taskDefinition.taskRole.roleArn } },
          }),
        );
      }
    }

    this.operatorRole = new Role(this, 'OperatorRole', {
      assumedBy: new AccountRootPrincipal(),
      description: `pgfanout ${this.namePrefix} operator: status, dead-letter redrive, pausing a replica`,
    });
    this.operatorPolicy = new ManagedPolicy(this, 'OperatorPolicy', {
      description: `pgfanout ${this.namePrefix}: pgfanout status, redrive and pause on this deployment's queues and event source mappings`,
      statements: operatorStatements(stack, this.namePrefix, this.encryptionKey.keyArn),
      roles: [this.operatorRole],
    });
    const reason =
      "Scoped by name to this deployment's queues (<prefix>-*, so that adding a replica changes no policy), by tag to its event source mappings (whose ids are generated) and to its appliers' functions (GetFunctionConfiguration, for redrive's dry runs: aws:ResourceTag on the deployment tag); lambda:ListEventSourceMappings supports no resource scoping.";
    const arnPrefix = (service: string) => `arn:<AWS::Partition>:${service}:<AWS::Region>:<AWS::AccountId>`;
    for (const resource of [`${arnPrefix('sqs')}:${this.namePrefix}-*.fifo`, `${arnPrefix('sqs')}:${this.namePrefix}-*-dlq.fifo`, '*', `${arnPrefix('lambda')}:event-source-mapping:*`, `${arnPrefix('lambda')}:function:*`]) {
      Validations.of(this.operatorPolicy).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });
    }

    const replicas = new Map<string, PgfanoutReplica>();
    const replicaStacks = new Map<string, NestedStack>();
    const applierEntry = props.applierEntry ?? join(projectRoot, ENTRY_POINTS.applierHandler);
    for (const config of props.replicas) {
      const nested = new NestedStack(this.shardStacks.get(replicaShard(config)) ?? this, `Replica-${config.name}`, {
        description: `pgfanout ${this.namePrefix}: replica ${config.name}`,
      });
      const replica = new PgfanoutReplica(nested, 'Replica', {
        config,
        topic: this.topics.get(replicaShard(config)) as Topic,
        encryptionKey: this.encryptionKey,
        vpc: this.vpc,
        ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
        securityGroups: this.applierSecurityGroups,
        alarmTopic: this.alarmTopic,
        namePrefix: this.namePrefix,
        applierEntry,
        operatorRoleArn: this.operatorRole.roleArn,
        signingKey: this.signingKey,
        projectRoot,
        logRetention,
        dataRemovalPolicy,
      });
      // The operator policy finds this deployment's event source mappings by this tag.
      Tags.of(replica).add(DEPLOYMENT_TAG, this.namePrefix);
      replicas.set(config.name, replica);
      replicaStacks.set(config.name, nested);
    }
    this.replicas = replicas;
    this.replicaStacks = replicaStacks;

    // The last resort: SNS failed to deliver and then failed to put the message in the
    // subscription's dead-letter queue, so it is gone from the pipeline
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-monitoring-using-cloudwatch.html).
    const lostAlarms = new Map<number, Alarm>();
    for (const [shard, topic] of this.topics) {
      const name = shard === 0 ? this.namePrefix : `${this.namePrefix}-shard${shard}`;
      const alarm = new Alarm(this.shardStacks.get(shard) ?? this, 'NotificationsLostAlarm', {
        alarmName: `${name}-notifications-lost`,
        alarmDescription: `pgfanout ${this.namePrefix}: SNS could neither deliver messages of topic ${topicName(this.namePrefix, shard)} to a replica queue nor move them to its delivery dead-letter queue (<prefix>-<replica>-sns-dlq.fifo). Some replica of that topic misses them and stops at the gap: check the dead-letter queues' policies and the KMS key policy, then resynchronize that replica.`,
        metric: topic.metric('NumberOfNotificationsFailedToRedriveToDlq', { statistic: 'Sum', period: Duration.minutes(1) }),
        threshold: 0,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      alarm.addAlarmAction(new SnsAction(this.alarmTopic));
      lostAlarms.set(shard, alarm);
    }
    this.notificationsLostAlarms = lostAlarms;
    this.notificationsLostAlarm = lostAlarms.get(0) as Alarm;

    const dashboards = new Map<number, Dashboard>();
    for (const shard of this.topics.keys()) {
      dashboards.set(
        shard,
        new Dashboard(this.shardStacks.get(shard) ?? this, 'Dashboard', {
          dashboardName: shard === 0 ? this.namePrefix : `${this.namePrefix}-shard${shard}`,
          defaultInterval: Duration.hours(3),
          widgets: this.#dashboardRows(shard, props.replicas),
        }),
      );
    }
    this.dashboards = dashboards;
    this.dashboard = dashboards.get(0) as Dashboard;
  }

  /** The dashboard's console address. */
  get dashboardUrl(): string {
    return `https://${Aws.REGION}.console.${Aws.URL_SUFFIX}/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.dashboard.dashboardName}`;
  }

  /** Shard 0's dashboard: the publisher, then its replicas; another shard's: its replicas. */
  #dashboardRows(shard: number, configs: readonly ReplicaConfig[]): IWidget[][] {
    const rows: IWidget[][] =
      shard === 0
        ? [
            [
              new TextWidget({
                markdown: `# pgfanout ${this.namePrefix}\nPublisher first, then one row per replica: lag, applied changes, queue, applier. Alarms notify the alarm topic.`,
                width: 24,
                height: 2,
              }),
            ],
            [...this.publisherMonitoring.widgets(), ...(this.publisher ? this.publisher.widgets() : [this.publisherMonitoring.errorsWidget()])],
          ]
        : [
            [
              new TextWidget({
                markdown: `# pgfanout ${this.namePrefix}, shard ${shard}\nThe replicas of topic ${topicName(this.namePrefix, shard)}, one row each: lag, applied changes, queue, applier. The publisher is on dashboard ${this.namePrefix}.`,
                width: 24,
                height: 2,
              }),
            ],
          ];
    for (const config of configs) {
      if (replicaShard(config) === shard) rows.push((this.replicas.get(config.name) as PgfanoutReplica).widgets());
    }
    return rows;
  }

  /**
   * The FIFO topic of `shard`, TLS only, encrypted with the key, which lets SNS encrypt what this
   * topic delivers into the (encrypted) replica queues. Every shard's topic is built here, so
   * that their settings and policies cannot differ.
   */
  #shardTopic(scope: Construct, stack: Stack, shard: number): Topic {
    const topic = new Topic(scope, 'Topic', {
      topicName: topicName(this.namePrefix, shard),
      displayName: shard === 0 ? `pgfanout ${this.namePrefix}` : `pgfanout ${this.namePrefix} shard ${shard}`,
      fifo: true,
      // The publisher sets each message's deduplication id, so a re-publish after a crash is dropped.
      contentBasedDeduplication: false,
      masterKey: this.encryptionKey,
      enforceSSL: true,
    });
    // The topic's ARN is spelled out from its name: a reference would make key and topic depend
    // on each other.
    const topicArn = stack.formatArn({ service: 'sns', resource: topicName(this.namePrefix, shard) });
    this.encryptionKey.addToResourcePolicy(
      new PolicyStatement({
        sid: shard === 0 ? 'TheTopicDeliversToEncryptedQueues' : `TheShard${shard}TopicDeliversToEncryptedQueues`,
        principals: [new ServicePrincipal('sns.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
        conditions: { ArnEquals: { 'aws:SourceArn': topicArn } },
      }),
    );
    return topic;
  }

  #newVpc(logRetention: RetentionDays): Vpc {
    const vpc = new Vpc(this, 'Vpc', {
      ipAddresses: IpAddresses.cidr('10.80.0.0/16'),
      maxAzs: 2,
      natGateways: 1,
      subnetConfiguration: [
        // Only the NAT gateway (with its own Elastic IP) lives in the public subnets: nothing there
        // gets a public address by default (Control Tower's control CT.EC2.PR.11).
        { name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        { name: 'private', subnetType: SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
      ],
    });
    const flowLogs = new LogGroup(this, 'VpcFlowLogs', { retention: logRetention, removalPolicy: RemovalPolicy.DESTROY });
    acknowledgeLogGroupControls(flowLogs);
    // CDK's custom resource that removes the rules of the VPC's default security group.
    const restrictDefaultGroup = Stack.of(this).node.tryFindChild('Custom::VpcRestrictDefaultSGCustomResourceProvider');
    if (restrictDefaultGroup) {
      Validations.of(restrictDefaultGroup).acknowledge({
        id: 'cdk-validator-cfnguard::lambda_inside_vpc_check',
        reason:
          "CDK's own provider of the custom resource that empties the new VPC's default security group: it runs once per deployment, calls only the EC2 API, and handles no pgfanout data; inside the VPC it would need the NAT gateway it is deployed with.",
      });
    }
    vpc.addFlowLog('FlowLog', { destination: FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: FlowLogTrafficType.REJECT });
    return vpc;
  }

  #subscribeEmail(email: string | undefined): void {
    if (email === undefined || email === '') return;
    const subscription = new Subscription(this, 'AlarmEmail', { topic: this.alarmTopic, protocol: SubscriptionProtocol.EMAIL, endpoint: email });
    if (Token.isUnresolved(email)) {
      const given = new CfnCondition(this, 'AlarmEmailGiven', { expression: Fn.conditionNot(Fn.conditionEquals(email, '')) });
      (subscription.node.defaultChild as CfnSubscription).cfnOptions.condition = given;
    }
  }
}
