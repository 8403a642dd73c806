/**
 * Throughput of the local SNS + SQS endpoint: messages per second through an SNS FIFO
 * topic → 3 SQS FIFO queues (raw delivery) → ReceiveMessage → DeleteMessageBatch, with
 * the real AWS SDK clients over HTTP, as pgfanout uses them (one publisher sending
 * PublishBatch of 10 in order; one consumer per queue receiving 10 and deleting them).
 *
 * The result is a ratio against a baseline measured in the same run: the same SDK calls,
 * with the same payloads, against a canned HTTP server that parses nothing it does not
 * have to and keeps no state (the floor set by the SDK, HTTP and this machine). Both
 * servers run in a child process (`server-process.ts`), the clients in this one. A ratio
 * near 1 means the endpoint is not what limits a benchmark that goes through it. The
 * endpoint's own work is also measured without HTTP (services called directly).
 *
 *   node_modules/.bin/node bench/endpoint/throughput.ts [messages per run] [runs]
 *
 * Writes bench/endpoint/results.json and bench/endpoint/RESULTS.md.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateTopicCommand, PublishBatchCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { systemClock } from '#local/endpoint/clock.ts';
import { SNS_INPUT_ERRORS, SnsService } from '#local/endpoint/sns/service.ts';
import { SQS_INPUT_ERRORS, SqsService } from '#local/endpoint/sqs/service.ts';
import { InputReader } from '#local/endpoint/wire/input.ts';
import { BENCH_BODY } from './workload.ts';

const MESSAGES = Number(process.argv[2] ?? 6000);
const RUNS = Number(process.argv[3] ?? 3);
const QUEUES = 3;
const GROUPS = 4;
const BODY = BENCH_BODY;
const here = dirname(fileURLToPath(import.meta.url));

function clients(url: string): { sns: SNSClient; sqs: SQSClient; destroy(): void } {
  const common = { endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' }, maxAttempts: 1 };
  const sns = new SNSClient(common);
  const sqs = new SQSClient(common);
  return { sns, sqs, destroy: () => (sns.destroy(), sqs.destroy()) };
}

/** Publishes `MESSAGES` in batches of 10 while one consumer per queue receives and deletes them. */
async function pipeline(sns: SNSClient, sqs: SQSClient, topicArn: string, queueUrls: readonly string[], run: number): Promise<number> {
  const started = performance.now();
  const publish = (async () => {
    for (let i = 0; i < MESSAGES; i += 10) {
      const entries = Array.from({ length: Math.min(10, MESSAGES - i) }, (_, n) => ({
        Id: `e${n}`,
        Message: BODY,
        MessageGroupId: `g${(i + n) % GROUPS}`,
        MessageDeduplicationId: `r${run}-m${i + n}`,
      }));
      const out = await sns.send(new PublishBatchCommand({ TopicArn: topicArn, PublishBatchRequestEntries: entries }));
      if ((out.Failed ?? []).length > 0) throw new Error(`publish failed: ${JSON.stringify(out.Failed)}`);
    }
  })();
  const consume = queueUrls.map(async (url) => {
    let received = 0;
    while (received < MESSAGES) {
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      const messages = out.Messages ?? [];
      if (messages.length === 0) continue;
      received += messages.length;
      await sqs.send(
        new DeleteMessageBatchCommand({ QueueUrl: url, Entries: messages.map((m, n) => ({ Id: String(n), ReceiptHandle: m.ReceiptHandle })) }),
      );
    }
  });
  await Promise.all([publish, ...consume]);
  return MESSAGES / ((performance.now() - started) / 1000);
}

/** Starts `server-process.ts <kind>`; `stop` returns the CPU time the server used. */
async function serverProcess(kind: 'endpoint' | 'canned'): Promise<{ url: string; stop(): Promise<number> }> {
  const child = spawn(process.execPath, [join(here, 'server-process.ts'), kind], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const queue: string[] = [];
  let waiting: ((line: string) => void) | undefined;
  lines.on('line', (line) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(line);
    } else queue.push(line);
  });
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const line = queue.shift();
      if (line !== undefined) return resolve(line);
      waiting = resolve;
      child.once('exit', (code) => reject(new Error(`server process ${kind} exited with ${code}`)));
    });
  const url = (JSON.parse(await next()) as { url: string }).url;
  return {
    url,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      const cpuMs = (JSON.parse(await next()) as { cpuMs: number }).cpuMs;
      await exited;
      lines.close();
      return cpuMs;
    },
  };
}

/** One measured run: rate, and CPU milliseconds per message in the server and in the clients. */
interface Measured {
  readonly rate: number;
  readonly serverCpuMsPerMessage: number;
  readonly clientCpuMsPerMessage: number;
}

async function measure(kind: 'endpoint' | 'canned', run: number): Promise<Measured> {
  const server = await serverProcess(kind);
  const { sns, sqs, destroy } = clients(server.url);
  let rate: number;
  let clientCpu: NodeJS.CpuUsage;
  try {
    let topicArn = 'arn:aws:sns:us-east-1:000000000000:bench.fifo';
    let queueUrls = Array.from({ length: QUEUES }, (_, q) => `${server.url}/000000000000/bench-${q}.fifo`);
    if (kind === 'endpoint') {
      topicArn = (await sns.send(new CreateTopicCommand({ Name: 'bench.fifo', Attributes: { FifoTopic: 'true' } }))).TopicArn as string;
      queueUrls = [];
      for (let q = 0; q < QUEUES; q++) {
        const url = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-${q}.fifo`, Attributes: { FifoQueue: 'true' } }))).QueueUrl as string;
        const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
        await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }));
        queueUrls.push(url);
      }
    }
    const before = process.cpuUsage();
    rate = await pipeline(sns, sqs, topicArn, queueUrls, run);
    clientCpu = process.cpuUsage(before);
  } finally {
    destroy();
  }
  const serverCpuMs = await server.stop();
  return {
    rate,
    serverCpuMsPerMessage: serverCpuMs / MESSAGES,
    clientCpuMsPerMessage: (clientCpu.user + clientCpu.system) / 1000 / MESSAGES,
  };
}

/** The endpoint's own work for the same flow, without HTTP: services called directly. */
async function coreRun(run: number): Promise<number> {
  const baseUrl = () => 'http://127.0.0.1:0';
  const common = { clock: systemClock, region: 'us-east-1', accountId: '000000000000', baseUrl };
  const sqs = new SqsService(common);
  const sns = new SnsService({ ...common, sqs });
  const S = (v: unknown) => new InputReader(v, SNS_INPUT_ERRORS);
  const Q = (v: unknown) => new InputReader(v, SQS_INPUT_ERRORS);
  const topicArn = sns.createTopic(S({ Name: 'bench.fifo', Attributes: { FifoTopic: 'true' } })).TopicArn;
  const urls: string[] = [];
  for (let q = 0; q < QUEUES; q++) {
    const url = sqs.createQueue(Q({ QueueName: `bench-${q}.fifo`, Attributes: { FifoQueue: 'true' } })).QueueUrl;
    const arn = sqs.getQueueAttributes(Q({ QueueUrl: url, AttributeNames: ['QueueArn'] })).Attributes?.QueueArn;
    sns.subscribe(S({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }));
    urls.push(url);
  }
  const started = performance.now();
  for (let i = 0; i < MESSAGES; i += 10) {
    const entries = Array.from({ length: 10 }, (_, n) => ({
      Id: `e${n}`,
      Message: BODY,
      MessageGroupId: `g${(i + n) % GROUPS}`,
      MessageDeduplicationId: `r${run}-m${i + n}`,
    }));
    sns.publishBatch(S({ TopicArn: topicArn, PublishBatchRequestEntries: entries }));
    for (const url of urls) {
      for (;;) {
        const out = await sqs.receiveMessage(Q({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
        const messages = out.Messages ?? [];
        if (messages.length === 0) break;
        sqs.deleteMessageBatch(Q({ QueueUrl: url, Entries: messages.map((m, n) => ({ Id: String(n), ReceiptHandle: m.ReceiptHandle })) }));
      }
    }
  }
  const rate = MESSAGES / ((performance.now() - started) / 1000);
  sqs.close();
  return rate;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

const loadBefore = loadavg()[0] as number;
const endpointRuns: Measured[] = [];
const baselineRuns: Measured[] = [];
const coreRates: number[] = [];
// One unrecorded round first: JIT warm-up of the SDK, the servers and the services.
await measure('canned', -1);
await measure('endpoint', -1);
await coreRun(-1);
for (let run = 0; run < RUNS; run++) {
  baselineRuns.push(await measure('canned', run));
  endpointRuns.push(await measure('endpoint', run));
  coreRates.push(await coreRun(run));
  const e = endpointRuns.at(-1) as Measured;
  const b = baselineRuns.at(-1) as Measured;
  console.log(
    `run ${run + 1}/${RUNS}: endpoint ${e.rate.toFixed(0)} msg/s (server CPU ${e.serverCpuMsPerMessage.toFixed(3)} ms/msg, clients ${e.clientCpuMsPerMessage.toFixed(3)}), ` +
      `baseline ${b.rate.toFixed(0)} msg/s (server CPU ${b.serverCpuMsPerMessage.toFixed(3)} ms/msg, clients ${b.clientCpuMsPerMessage.toFixed(3)}), core ${coreRates.at(-1)?.toFixed(0)} msg/s`,
  );
}
const endpointRates = endpointRuns.map((r) => r.rate);
const baselineRates = baselineRuns.map((r) => r.rate);
const endpointCpu = median(endpointRuns.map((r) => r.serverCpuMsPerMessage));
const clientCpu = median(endpointRuns.map((r) => r.clientCpuMsPerMessage));

const result = {
  date: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    /** One-minute load average before and after the runs: other work on the machine. */
    loadAverage: [Number(loadBefore.toFixed(1)), Number((loadavg()[0] as number).toFixed(1))],
  },
  workload: { messagesPerRun: MESSAGES, runs: RUNS, queues: QUEUES, messageGroups: GROUPS, bodyBytes: Buffer.byteLength(BODY), publishBatch: 10, receiveBatch: 10 },
  messagesPerSecond: {
    endpoint: Math.round(median(endpointRates)),
    baseline: Math.round(median(baselineRates)),
    coreWithoutHttp: Math.round(median(coreRates)),
  },
  /** Median of the per-run ratios (each run measures baseline and endpoint back to back). */
  ratioEndpointToBaseline: Number(median(endpointRates.map((e, i) => e / (baselineRates[i] as number))).toFixed(2)),
  ratioCoreToBaseline: Number(median(coreRates.map((c, i) => c / (baselineRates[i] as number))).toFixed(1)),
  /** CPU milliseconds per message: the endpoint process, and the SDK clients that drive it. */
  cpuMsPerMessage: {
    endpointServer: Number(endpointCpu.toFixed(3)),
    sdkClients: Number(clientCpu.toFixed(3)),
    cannedServer: Number(median(baselineRuns.map((r) => r.serverCpuMsPerMessage)).toFixed(3)),
  },
  ratioEndpointCpuToClientCpu: Number((endpointCpu / clientCpu).toFixed(2)),
  runs: { endpoint: endpointRuns, baseline: baselineRuns, coreWithoutHttp: coreRates.map(Math.round) },
};

await writeFile(join(here, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
await writeFile(
  join(here, 'RESULTS.md'),
  `# Local endpoint throughput

Measured ${result.date} with \`node_modules/.bin/node bench/endpoint/throughput.ts ${MESSAGES} ${RUNS}\`
on ${result.machine.cpus} CPUs (${result.machine.cpuModel}), ${result.machine.memoryGiB} GiB, Node ${result.machine.node};
one-minute load average ${result.machine.loadAverage[0]} before and ${result.machine.loadAverage[1]} after (other work on the machine).

Flow: SNS FIFO topic → ${QUEUES} SQS FIFO queues (raw delivery) → ReceiveMessage (10) → DeleteMessageBatch,
${MESSAGES} messages of ${result.workload.bodyBytes} bytes in ${GROUPS} message groups, published in PublishBatch calls of 10
by one publisher while one consumer per queue receives and deletes. A message counts once it has been
deleted from all ${QUEUES} queues. After one unrecorded warm-up round, ${RUNS} rounds each measure the
baseline, the endpoint and the services back to back; rates are medians, ratios the median of the
per-round ratios.

| what | messages/s | ratio to baseline |
| --- | ---: | ---: |
| baseline: same SDK calls against a canned, stateless HTTP server | ${result.messagesPerSecond.baseline} | 1.00 |
| local endpoint, real SDK clients over HTTP | ${result.messagesPerSecond.endpoint} | ${result.ratioEndpointToBaseline} |
| endpoint services without HTTP (same work, called in-process) | ${result.messagesPerSecond.coreWithoutHttp} | ${result.ratioCoreToBaseline} |

CPU time per message, from the same endpoint runs: the endpoint process used
${result.cpuMsPerMessage.endpointServer} ms, the SDK clients driving it ${result.cpuMsPerMessage.sdkClients} ms
(ratio ${result.ratioEndpointCpuToClientCpu}); the canned server used ${result.cpuMsPerMessage.cannedServer} ms. This
depends much less than the rates on what else the machine runs.

The baseline is the ceiling that the SDK, HTTP and this machine allow for this call pattern; the
endpoint reaches the given fraction of it. Without HTTP, the endpoint's own work is the last row.
The machine is shared with other work, so rates vary between runs; see \`results.json\` for every run.
`,
);
console.log(JSON.stringify(result.messagesPerSecond), 'ratio', result.ratioEndpointToBaseline, 'cpu', JSON.stringify(result.cpuMsPerMessage));
