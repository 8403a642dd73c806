/**
 * A server for the throughput benchmark, run in its own process so that it does not share
 * a thread with the SDK clients that load it: `endpoint` starts the local endpoint,
 * `canned` a stateless server that answers PublishBatch, ReceiveMessage and
 * DeleteMessageBatch with minimal valid replies. Prints `{"url": …}` on one line, then
 * runs until its standard input closes, and prints `{"cpuMs": …}`, the CPU time it used since it started listening.
 *
 *   node_modules/.bin/node bench/endpoint/server-process.ts endpoint|canned
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { md5OfText } from '#local/endpoint/digest.ts';
import { startEndpoint } from '#local/endpoint/index.ts';
import { BENCH_BODY } from './workload.ts';

const kind = process.argv[2];

async function canned(): Promise<{ url: string; close(): Promise<void> }> {
  const md5 = md5OfText(BENCH_BODY);
  const tenMessages = JSON.stringify({
    Messages: Array.from({ length: 10 }, (_, n) => ({ MessageId: `m${n}`, ReceiptHandle: `h${n}`, MD5OfBody: md5, Body: BENCH_BODY })),
  });
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = req.headers['x-amz-target'];
      let body: string;
      let type = 'application/x-amz-json-1.0';
      if (target === 'AmazonSQS.ReceiveMessage') {
        body = tenMessages;
      } else if (target === 'AmazonSQS.DeleteMessageBatch') {
        const entries = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Entries: { Id: string }[] }).Entries;
        body = JSON.stringify({ Successful: entries.map((e) => ({ Id: e.Id })), Failed: [] });
      } else {
        const ids = [...Buffer.concat(chunks).toString('utf8').matchAll(/PublishBatchRequestEntries\.member\.\d+\.Id=([^&]*)/g)].map((m) => m[1]);
        body =
          '<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful>' +
          ids.map((id, n) => `<member><Id>${id}</Id><MessageId>m${n}</MessageId><SequenceNumber>1</SequenceNumber></member>`).join('') +
          '</Successful><Failed/></PublishBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishBatchResponse>';
        type = 'text/xml';
      }
      res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

if (kind !== 'endpoint' && kind !== 'canned') {
  console.error(`usage: server-process.ts endpoint|canned (got ${JSON.stringify(kind)})`);
  process.exit(2);
}
const server = kind === 'endpoint' ? await startEndpoint({ port: 0 }) : await canned();
const startCpu = process.cpuUsage();
console.log(JSON.stringify({ url: server.url }));
process.stdin.resume();
process.stdin.on('end', () => {
  // CPU time this process used, so the benchmark can compare it with its clients'.
  const cpu = process.cpuUsage(startCpu);
  console.log(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 }));
  void server.close().then(() => process.exit(0));
});
