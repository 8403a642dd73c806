/**
 * pgfanout's own CloudWatch metrics as the dashboard and alarms read them.
 *
 * Namespace, metric names and dimension names come from `functions/core/config.ts`, the
 * module the publisher and the applier emit them with. CloudWatch treats each set of
 * dimensions as a separate metric, so the sets below must be exactly what the code emits:
 *
 * - the applier (Powertools Metrics) emits `{ service, Deployment, Replica }`;
 * - the publisher emits `{ service, Deployment }` from its first metric on, in every state
 *   (functions/publisher/metrics.ts).
 *
 * `Deployment` is the stack's name prefix, so that two deployments in one account (staging
 * and production) never read each other's metrics.
 */
import { Duration } from 'aws-cdk-lib';
import { MathExpression, Metric, type MetricOptions } from 'aws-cdk-lib/aws-cloudwatch';
import { DIMENSIONS, METRIC_NAMESPACE, METRICS } from '#core/config.ts';

/** Powertools' `service` dimension, which it adds to every metric. */
export const SERVICE_DIMENSION = 'service';
/** Service name the applier's Logger and Metrics use (functions/applier/handler.ts). */
export const APPLIER_SERVICE_NAME = 'pgfanout-applier';
/** Service name the publisher's Logger and Metrics use (functions/publisher/metrics.ts). */
export const PUBLISHER_SERVICE_NAME = 'pgfanout-publisher';

/** A metric name the applier emits. */
export type ApplierMetricName = (typeof METRICS.applier)[keyof typeof METRICS.applier];
/** A metric name the publisher emits. */
export type PublisherMetricName = (typeof METRICS.publisher)[keyof typeof METRICS.publisher];

/** The dimensions the applier of `replica` in deployment `deployment` emits its metrics with. */
export function applierDimensions(replica: string, deployment: string): Record<string, string> {
  return { [SERVICE_DIMENSION]: APPLIER_SERVICE_NAME, [DIMENSIONS.deployment]: deployment, [DIMENSIONS.replica]: replica };
}

/** One of the applier's metrics for `replica`, one-minute periods by default. */
export function applierMetric(replica: string, deployment: string, name: ApplierMetricName, options: MetricOptions = {}): Metric {
  return new Metric({
    namespace: METRIC_NAMESPACE,
    metricName: name,
    dimensionsMap: applierDimensions(replica, deployment),
    period: Duration.minutes(1),
    ...options,
  });
}

/** The dimensions the publisher of deployment `deployment` emits its metrics with. */
export function publisherDimensions(deployment: string): Record<string, string> {
  return { [SERVICE_DIMENSION]: PUBLISHER_SERVICE_NAME, [DIMENSIONS.deployment]: deployment };
}

/** One of the publisher's metrics, one-minute periods by default. */
export function publisherMetric(deployment: string, name: PublisherMetricName, options: MetricOptions = {}): Metric {
  return new Metric({
    namespace: METRIC_NAMESPACE,
    metricName: name,
    dimensionsMap: publisherDimensions(deployment),
    period: Duration.minutes(1),
    ...options,
  });
}

/** A per-second rate of one of the publisher's counters. */
export function publisherRate(deployment: string, name: PublisherMetricName, label: string): MathExpression {
  const id = `sum${name}`.toLowerCase();
  return new MathExpression({
    expression: `${id} / PERIOD(${id})`,
    usingMetrics: { [id]: publisherMetric(deployment, name, { statistic: 'Sum' }) },
    period: Duration.minutes(1),
    label,
  });
}
