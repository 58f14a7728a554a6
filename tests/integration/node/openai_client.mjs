// The official `openai` package as a client of synapse gateway. Run by
// tests/integration/test_gateway_e2e.c:  node openai_client.mjs BASE_URL MODEL
// Prints one JSON object per line, one per case; the C test checks them.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0, timeout: 30000 });
const out = (o) => console.log(JSON.stringify(o));
const messages = [{ role: "user", content: "Tell me a story." }];

async function main() {
  // chat, not streamed
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, seed: 7 });
  out({
    case: "chat",
    id: chat.id,
    object: chat.object,
    text: chat.choices[0].message.content,
    role: chat.choices[0].message.role,
    finish_reason: chat.choices[0].finish_reason,
    usage: chat.usage,
  });

  // chat, streamed, with the usage chunk
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, seed: 7, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, role = null, finish = null, usage = null;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    const d = c.choices[0].delta;
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  out({ case: "chat_stream", text, chunks, role, finish_reason: finish, usage });

  // completions, not streamed and streamed
  const cmpl = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 10, seed: 3 });
  out({ case: "completion", object: cmpl.object, text: cmpl.choices[0].text,
        finish_reason: cmpl.choices[0].finish_reason, usage: cmpl.usage });
  const cs = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 10, seed: 3, stream: true });
  let ctext = "", cfinish = null;
  for await (const c of cs) {
    ctext += c.choices[0]?.text ?? "";
    if (c.choices[0]?.finish_reason) cfinish = c.choices[0].finish_reason;
  }
  out({ case: "completion_stream", text: ctext, finish_reason: cfinish });

  // the models list
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  out({ case: "models", models });

  // errors come back as APIError with the status and the error object
  for (const [name, req] of [
    ["unknown_model", { model: "no-such-model", messages }],
    ["n2", { model, messages, n: 2 }],
  ]) {
    try {
      await client.chat.completions.create(req);
      out({ case: name, status: 200 });
    } catch (e) {
      out({ case: name, status: e.status, code: e.code ?? null, type: e.type ?? null,
            param: e.param ?? null, message: e.message });
    }
  }
}

main().catch((e) => {
  out({ case: "fatal", message: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
