/**
 * pgfanout's CDK constructs, for use from your own CDK app: `Pgfanout` (the whole
 * deployment), the constructs it composes, the stack the ready app deploys, and the
 * configuration types and their validation.
 */
export { Pgfanout, PROJECT_ROOT, PUBLISHER_DOCKERFILE, type PgfanoutProps } from './pgfanout.ts';
export { PgfanoutStack, type PgfanoutStackProps } from './stack.ts';
export { PgfanoutReplica, applierBundling, type PgfanoutReplicaProps, type ReplicaAlarms } from './replica.ts';
export { PgfanoutPublisher, PublisherMonitoring, type PgfanoutPublisherProps, type PublisherMonitoringProps, type PublisherAlarms } from './publisher.ts';
export {
  DEFAULTS,
  LIMITS,
  LOG_LEVELS,
  configProblems,
  validatePgfanoutConfig,
  queueName,
  deadLetterQueueName,
  deliveryDeadLetterQueueName,
  topicName,
  type LogLevel,
  type PgfanoutConfig,
  type PublisherOptions,
  type ReplicaConfig,
  type SecretReference,
  type SourceConfig,
} from './config.ts';
export { readAppSettings, CONTEXT_KEYS, DEFAULT_STACK_NAME, type AppSettings, type ExistingNetwork } from './context.ts';
export { applierDimensions, applierMetric, publisherDimensions, publisherMetric, publisherRate, APPLIER_SERVICE_NAME, PUBLISHER_SERVICE_NAME, SERVICE_DIMENSION } from './metrics.ts';
export { CDK_ERROR_CODES, PgfanoutCdkError, PgfanoutConfigError, type CdkErrorCode } from './errors.ts';
