/**
 * The HTTP health endpoint for the container health check: `GET /health` answers 200
 * with the publisher's state as JSON while its loop makes progress (active: looks for the
 * next batch or has SNS accept messages; standing by: polls the single-publisher lock),
 * and 503 when the loop stopped, or made no progress for `progressTimeoutMs` (blocked on
 * the source, failing, or stuck), so ECS replaces the task. A stopped process does not
 * answer at all, which the health check counts as a failure too.
 */
import { createServer, type Server } from 'node:http';
import type { PublisherHealth } from './publisher.ts';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/** True while the publisher's loop runs and made progress within `progressTimeoutMs`. */
export function isHealthy(health: PublisherHealth, now: number, progressTimeoutMs = health.progressTimeoutMs): boolean {
  if (health.state === 'stopped') return false;
  return now - Date.parse(health.lastLoopAt) < progressTimeoutMs;
}

export async function startHealthServer(port: number, health: () => PublisherHealth): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/health' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found: use GET /health"}');
      return;
    }
    const body = health();
    const ok = isHealthy(body, Date.now());
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ healthy: ok, ...body }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
