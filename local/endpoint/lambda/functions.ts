/**
 * Lambda functions as configuration only: CreateFunction (`POST /2015-03-31/functions`) stores a
 * function's name and environment, GetFunctionConfiguration (`GET
 * /2015-03-31/functions/{FunctionName}/configuration`, name or ARN,
 * https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionConfiguration.html) returns them
 * with `Environment.Variables`, as Lambda does. Code is never run here: `pgfanout local` runs the
 * applier's handler in its own process. It registers each replica's applier with the environment
 * that applier reads, so that operator tools (`pgfanout redrive`) find the replica's settings the
 * way they do on AWS. Errors follow Lambda's REST-JSON shape, as the event source mappings'.
 */
import type { MappingReply } from './event-source-mappings.ts';

/** Lambda's API version prefix of the function routes. */
export const FUNCTIONS_PATH = '/2015-03-31/functions';

interface FunctionConfig {
  readonly FunctionName: string;
  readonly FunctionArn: string;
  readonly Environment: { readonly Variables: Readonly<Record<string, string>> };
}

const reply = (status: number, body: unknown, type?: string): MappingReply => ({
  status,
  headers: { 'content-type': 'application/json', ...(type ? { 'x-amzn-errortype': type } : {}) },
  body: JSON.stringify(type ? { Type: 'User', Message: body } : body),
});

export class LambdaFunctions {
  readonly #functions = new Map<string, FunctionConfig>();
  readonly #region: string;
  readonly #accountId: string;

  constructor(options: { readonly region: string; readonly accountId: string }) {
    this.#region = options.region;
    this.#accountId = options.accountId;
  }

  /** Handles one request under {@link FUNCTIONS_PATH}. */
  handle(method: string, url: URL, body: string): MappingReply {
    const rest = url.pathname.slice(FUNCTIONS_PATH.length).replace(/^\/+|\/+$/g, '');
    if (rest === '' && method === 'POST') return this.#create(body);
    const parts = rest.split('/');
    if (parts.length === 2 && parts[1] === 'configuration' && method === 'GET') {
      const name = this.#name(decodeURIComponent(parts[0] as string));
      const fn = this.#functions.get(name);
      if (fn === undefined) return reply(404, `Function not found: ${this.#arn(name)}`, 'ResourceNotFoundException');
      return reply(200, fn);
    }
    return reply(404, `No route for ${method} ${url.pathname}; the local endpoint implements CreateFunction and GetFunctionConfiguration only.`, 'ResourceNotFoundException');
  }

  /** A function name from a name, an ARN or a partial ARN (`123456789012:function:name`), without a qualifier. */
  #name(nameOrArn: string): string {
    const m = /(?:^|:)function:([^:]+)/.exec(nameOrArn);
    return m ? (m[1] as string) : (nameOrArn.split(':')[0] as string);
  }

  #arn(name: string): string {
    return `arn:aws:lambda:${this.#region}:${this.#accountId}:function:${name}`;
  }

  #create(body: string): MappingReply {
    let input: { FunctionName?: unknown; Environment?: { Variables?: unknown } };
    try {
      input = JSON.parse(body) as typeof input;
    } catch {
      return reply(400, 'The request body is not valid JSON.', 'InvalidParameterValueException');
    }
    if (typeof input.FunctionName !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(input.FunctionName)) {
      return reply(400, `FunctionName ${JSON.stringify(input.FunctionName)} is not a function name (1 to 64 letters, digits, hyphens, underscores).`, 'InvalidParameterValueException');
    }
    const variables = input.Environment?.Variables ?? {};
    if (typeof variables !== 'object' || variables === null || Object.values(variables).some((v) => typeof v !== 'string')) {
      return reply(400, 'Environment.Variables must map names to strings.', 'InvalidParameterValueException');
    }
    if (this.#functions.has(input.FunctionName)) return reply(409, `Function already exist: ${input.FunctionName}`, 'ResourceConflictException');
    const fn: FunctionConfig = { FunctionName: input.FunctionName, FunctionArn: this.#arn(input.FunctionName), Environment: { Variables: { ...(variables as Record<string, string>) } } };
    this.#functions.set(fn.FunctionName, fn);
    return reply(201, fn);
  }
}
