/**
 * The HTTP health endpoint for the container health check: `GET /health` answers 200
 * with the publisher's state as JSON while the loop is healthy (active, or standing by
 * behind another active publisher), and 503 when it has been failing for longer than
 * `unhealthyAfterMs`.
 */
import { createServer, type Server } from 'node:http';
import type { PublisherHealth } from './publisher.ts';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export function isHealthy(health: PublisherHealth, now: number, unhealthyAfterMs: number): boolean {
  if (health.state === 'active' || health.state === 'standby' || health.state === 'starting') return true;
  if (health.state === 'stopped') return false;
  const since = health.lastProgressAt ? Date.parse(health.lastProgressAt) : 0;
  return now - since < unhealthyAfterMs;
}

export async function startHealthServer(
  port: number,
  health: () => PublisherHealth,
  unhealthyAfterMs = 60_000,
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/health' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found: use GET /health"}');
      return;
    }
    const body = health();
    const ok = isHealthy(body, Date.now(), unhealthyAfterMs);
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
