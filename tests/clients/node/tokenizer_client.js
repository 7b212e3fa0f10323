#!/usr/bin/env node
// A Node.js client of genai.tokenizer.v1.TokenizerService, built from the contract AS IS
// (no generated code): proves the .proto works for a non-Python consumer.
//
//   node tokenizer_client.js 127.0.0.1:50051
//
// Prints one JSON object with the results to stdout and exits 0; on any failure it
// writes the error to stderr and exits 1. tests/clients/test_node_client.py runs it.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "proto");
const PROTO_FILE = "genai/tokenizer/v1/tokenizer_service.proto";
const DEADLINE_MS = 30_000;

function loadService() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto (snake_case)
    longs: String, // uint64 fields as decimal strings, never lossy
    enums: String, // enum values by name
    defaults: true, // unset scalars as their proto3 defaults
    arrays: true, // unset repeated fields as []
    oneofs: true, // virtual field naming the set member of each oneof
  });
  const pkg = grpc.loadPackageDefinition(definition);
  return pkg.genai.tokenizer.v1.TokenizerService;
}

// Promisified unary call with a deadline.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

async function main(argv) {
  const target = argv[2];
  if (!target) {
    throw new Error("usage: node tokenizer_client.js HOST:PORT");
  }
  const TokenizerService = loadService();
  const client = new TokenizerService(target, grpc.credentials.createInsecure());
  try {
    await new Promise((resolve, reject) =>
      client.waitForReady(new Date(Date.now() + DEADLINE_MS), (err) => (err ? reject(err) : resolve()))
    );

    const tokenize = await call(client, "Tokenize", {
      request_id: "node-tokenize-1",
      texts: ["Hello world"],
      return_tokens: true,
      return_offsets: true,
    });
    const count = await call(client, "CountTokens", { texts: ["Hello world"] });
    const chat = await call(client, "RenderChatTemplate", {
      messages: [{ role: "user", content: "Hello!" }],
      add_generation_prompt: true,
    });
    const info = await call(client, "GetTokenizer", {});

    let unknown;
    try {
      await call(client, "Tokenize", { tokenizer: "no-such-tokenizer", texts: ["x"] });
      unknown = { code: grpc.status.OK, name: "OK", details: "" };
    } catch (err) {
      if (typeof err.code !== "number") throw err;
      unknown = { code: err.code, name: grpc.status[err.code], details: err.details };
    }

    const encoding = tokenize.encodings[0];
    return {
      target,
      tokenize: {
        request_id: tokenize.request_id,
        tokenizer: tokenize.tokenizer,
        ids: encoding.ids,
        tokens: encoding.tokens,
        offsets: encoding.offsets.map((o) => [o.start, o.end]),
        special_flags: encoding.special_flags,
        token_count: encoding.token_count,
      },
      count: { counts: count.counts, total: count.total, tokenizer: count.tokenizer },
      chat: { text: chat.text, token_count: chat.token_count, ids_length: chat.ids.length, tokenizer: chat.tokenizer },
      tokenizer: {
        id: info.tokenizer.id,
        kind: info.tokenizer.kind,
        source: info.tokenizer.source,
        vocab_size: info.tokenizer.vocab_size,
        max_length: info.tokenizer.max_length,
        has_chat_template: info.tokenizer.has_chat_template,
        revision: info.tokenizer.revision,
      },
      unknown_tokenizer: unknown,
    };
  } finally {
    client.close();
  }
}

main(process.argv).then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exitCode = 0;
  },
  (err) => {
    const detail = typeof err.code === "number" ? ` (code ${err.code} ${grpc.status[err.code]}: ${err.details})` : "";
    process.stderr.write(`tokenizer_client: ${err.stack || err}${detail}\n`);
    process.exitCode = 1;
  }
);
