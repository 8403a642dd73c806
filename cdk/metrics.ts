/**
 * pgfanout's own CloudWatch metrics as the dashboard and alarms read them.
 *
 * Namespace, metric names and dimension names come from `functions/core/config.ts`, the
 * module the publisher and the applier emit them with. CloudWatch treats each set of
 * dimensions as a separate metric, so the sets below must be exactly what the code emits:
 *
 * - the applier (Powertools Metrics) emits `{ service, Replica }`;
 * - the publisher emits `{ service, Source }` where `Source` is the source database's
 *   pgfanout id, known only at run time; its metrics are therefore read with Metrics
 *   Insights queries that select by `service` across every `Source`.
 */
import { Duration } from 'aws-cdk-lib';
import { MathExpression, Metric, type MetricOptions } from 'aws-cdk-lib/aws-cloudwatch';
import { DIMENSIONS, METRIC_NAMESPACE, METRICS } from '#core/config.ts';

/** Powertools' `service` dimension, which it adds to every metric. */
export const SERVICE_DIMENSION = 'service';
/** Service name the applier's Logger and Metrics use (functions/applier/handler.ts). */
export const APPLIER_SERVICE_NAME = 'pgfanout-applier';
/** Service name the publisher's Logger and Metrics use (functions/publisher/main.ts). */
export const PUBLISHER_SERVICE_NAME = 'pgfanout-publisher';

/** A metric name the applier emits. */
export type ApplierMetricName = (typeof METRICS.applier)[keyof typeof METRICS.applier];
/** A metric name the publisher emits. */
export type PublisherMetricName = (typeof METRICS.publisher)[keyof typeof METRICS.publisher];

/** The dimensions the applier of `replica` emits its metrics with. */
export function applierDimensions(replica: string): Record<string, string> {
  return { [SERVICE_DIMENSION]: APPLIER_SERVICE_NAME, [DIMENSIONS.replica]: replica };
}

/** One of the applier's metrics for `replica`, one-minute periods by default. */
export function applierMetric(replica: string, name: ApplierMetricName, options: MetricOptions = {}): Metric {
  return new Metric({
    namespace: METRIC_NAMESPACE,
    metricName: name,
    dimensionsMap: applierDimensions(replica),
    period: Duration.minutes(1),
    ...options,
  });
}

/** Aggregations Metrics Insights offers. */
export type InsightsFunction = 'MAX' | 'MIN' | 'SUM' | 'AVG' | 'COUNT';

/**
 * One of the publisher's metrics as a Metrics Insights query over every `Source` (a
 * stack has one source; its id changes only if pgfanout is reinstalled there), in
 * one-minute periods.
 */
export function publisherQuery(name: PublisherMetricName, fn: InsightsFunction, label: string): MathExpression {
  return new MathExpression({
    expression: `SELECT ${fn}(${name}) FROM SCHEMA("${METRIC_NAMESPACE}", ${DIMENSIONS.source}, ${SERVICE_DIMENSION}) WHERE ${SERVICE_DIMENSION} = '${PUBLISHER_SERVICE_NAME}'`,
    usingMetrics: {},
    period: Duration.minutes(1),
    label,
  });
}

/** A per-second rate of one of the publisher's counters (CloudWatch allows a Metrics Insights query as input to metric math). */
export function publisherRate(name: PublisherMetricName, label: string): MathExpression {
  const id = `sum${name}`.toLowerCase();
  return new MathExpression({
    expression: `${id} / PERIOD(${id})`,
    usingMetrics: { [id]: publisherQuery(name, 'SUM', `${name} per period`) },
    period: Duration.minutes(1),
    label,
  });
}
