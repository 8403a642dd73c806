/**
 * The publisher's side of the core: reads a batch from the source with COPY (streamed, parsed
 * as COPY text) and encodes it into envelopes of at most the message size. Nothing on the
 * replica side imports this folder.
 */
export { readBatch, CopyTextParser, BatchTokenAssembler, type BatchToken, type ChangeToken, type ValueToken, type CopySink } from './reader.ts';
export {
  encodeBatch,
  BatchEncoder,
  DEFAULT_MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  MAX_MAX_MESSAGE_BYTES,
  type BatchMeta,
  type EncodeOptions,
  type OutgoingMessage,
} from './encoder.ts';
