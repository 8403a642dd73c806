/**
 * pgfanout's Lambda event-source runner: drives an SQS-triggered handler on one machine
 * the way Lambda's SQS event source mapping does (long polling, batches of up to 10, real
 * `SQSEvent` and context, partial batch responses, retries through the visibility
 * timeout), against the local endpoint, LocalStack or AWS.
 */
export {
  startEventSourceRunner,
  RunnerConfigError,
  type EventSourceRunner,
  type RunnerStats,
  type SqsHandler,
} from './runner.ts';
export { invocationContext, toRecord } from './lambda-event.ts';
