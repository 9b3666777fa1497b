// `src/models/get/hub*.ts`: pulling a Hugging Face repo into the cache, against a fake hub on 127.0.0.1
// (test/helpers/hub-server.ts): selection of files, resume with Range after an interruption,
// checksums, gated/missing repos, abort, retries, a full disk (a 1 MiB tmpfs), list and remove.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { listRepoFiles, planPull, pullModel } from "../src/models/get/hub.js";
import { listCachedModels, removeCachedModel } from "../src/models/get/hub-cache.js";
import { HubError, hubEndpoint, hubToken, parseRepoSpec } from "../src/models/get/hub-http.js";
import { progressBarReporter, type PullProgress } from "../src/models/get/hub-progress.js";
import { formatBytes } from "../src/util/format.js";
import { startHubServer, type FakeFile, type HubServer } from "./helpers/hub-server.js";

const ENV_KEYS = ["TEXT2SQL_HOME", "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME", "HF_HUB_OFFLINE"] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const tmpDirs: string[] = [];

function tmpDir(prefix = "text2sql-hub-"): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

/** deterministic pseudo-random bytes */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let off = 0;
  for (let i = 0; off < n; i++) {
    const h = crypto.createHash("sha256").update(`${seed}:${i}`).digest();
    off += h.copy(out, off);
  }
  return out;
}

const SHARD1 = bytes(300_000, 1);
const SHARD2 = bytes(250_000, 2);
const INDEX_JSON = JSON.stringify({
  metadata: { total_size: 550_000 },
  weight_map: {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.norm.weight": "model-00002-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
  },
});
const CONFIG = JSON.stringify({ architectures: ["LlamaForCausalLM"], hidden_size: 64 });

/** a sharded Llama repo with things that must not be downloaded */
function llamaFiles(): FakeFile[] {
  return [
    { name: ".gitattributes", content: "*.safetensors filter=lfs\n" },
    { name: "README.md", content: "# tiny llama\n" },
    { name: "config.json", content: CONFIG },
    { name: "generation_config.json", content: '{"bos_token_id":1}' },
    { name: "tokenizer.model", content: bytes(5_000, 3) },
    { name: "tokenizer.json", content: '{"model":{"type":"BPE"}}' },
    { name: "tokenizer_config.json", content: '{"add_bos_token":true}' },
    { name: "special_tokens_map.json", content: '{"bos_token":"<s>"}' },
    { name: "model.safetensors.index.json", content: INDEX_JSON },
    { name: "model-00001-of-00002.safetensors", content: SHARD1 },
    { name: "model-00002-of-00002.safetensors", content: SHARD2 },
    { name: "consolidated.safetensors", content: bytes(40_000, 4) }, // not in the index
    { name: "pytorch_model.bin", content: bytes(60_000, 5) },
    { name: "onnx/model.onnx", content: bytes(1_000, 6) },
  ];
}

const WANTED = [
  "config.json",
  "generation_config.json",
  "model.safetensors.index.json",
  "special_tokens_map.json",
  "tokenizer.json",
  "tokenizer.model",
  "tokenizer_config.json",
  "model-00001-of-00002.safetensors",
  "model-00002-of-00002.safetensors",
];

let hub: HubServer;
let home: string;

beforeAll(async () => {
  hub = await startHubServer([
    { id: "acme/tiny-llama", files: llamaFiles() },
    {
      id: "acme/gated-llama",
      token: "hf_secret",
      files: [
        { name: "config.json", content: CONFIG },
        { name: "tokenizer.json", content: "{}" },
        { name: "model.safetensors", content: bytes(120_000, 7) },
      ],
    },
    {
      id: "acme/bin-only",
      files: [
        { name: "config.json", content: CONFIG },
        { name: "tokenizer.model", content: bytes(100, 8) },
        { name: "pytorch_model.bin", content: bytes(1000, 9) },
      ],
    },
    {
      id: "acme/small",
      files: [
        { name: "config.json", content: CONFIG },
        { name: "tokenizer.model", content: bytes(2_000, 10) },
        { name: "model.safetensors", content: bytes(200_000, 11) },
      ],
    },
  ]);
});
afterAll(async () => {
  await hub?.close();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

beforeEach(() => {
  home = tmpDir();
  process.env.TEXT2SQL_HOME = home;
  process.env.HF_ENDPOINT = `${hub.url}/`; // the trailing slash is stripped
  process.env.HF_TOKEN_PATH = path.join(home, "no-token-file");
  for (const k of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_HUB_OFFLINE"]) delete process.env[k];
  hub.requests.length = 0;
  hub.faults.length = 0;
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

function snapshotDir(repo: string, commit: string) {
  return path.join(home, "hub", repo.replace("/", "--"), commit);
}

const fast = { retryDelayMs: 5 };

/** a port nothing listens on (one that was just closed) */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<HubError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HubError);
    return e as HubError;
  }
  throw new Error("expected the promise to reject");
}

describe("repo specs, endpoint, token", () => {
  test("parseRepoSpec reads owner/name[@revision] and hub URLs; defaults to main", () => {
    expect(parseRepoSpec("TinyLlama/TinyLlama-1.1B-Chat-v1.0")).toEqual({
      repo: "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
      owner: "TinyLlama",
      name: "TinyLlama-1.1B-Chat-v1.0",
      revision: "main",
    });
    expect(parseRepoSpec("a/b@v1.0").revision).toBe("v1.0");
    expect(parseRepoSpec("a/b@refs/pr/3").revision).toBe("refs/pr/3");
    expect(parseRepoSpec("https://huggingface.co/a/b")).toMatchObject({ repo: "a/b", revision: "main" });
    expect(parseRepoSpec("https://huggingface.co/a/b/tree/dev")).toMatchObject({ repo: "a/b", revision: "dev" });
  });

  test.each([
    ["tinyllama", /expected "<owner>\/<name>"/],
    ["a/b/c", /expected "<owner>\/<name>"/],
    ["/b", /missing owner/],
    ["a/b@", /empty revision/],
    ["a/b c", /may only contain letters/],
    ["a/-b", /may not start or end/],
    ["a/b--c", /may not contain '--'/],
    ["a/b@../x", /bad revision/],
  ])("parseRepoSpec(%j) fails naming what was expected", (spec, re) => {
    expect(() => parseRepoSpec(spec)).toThrow(re);
    expect(() => parseRepoSpec(spec)).toThrow(/TinyLlama|revision/);
  });

  test("hubEndpoint strips the trailing slash and defaults to huggingface.co; the token comes from HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the login file", () => {
    expect(hubEndpoint()).toBe(hub.url);
    delete process.env.HF_ENDPOINT;
    expect(hubEndpoint()).toBe("https://huggingface.co");
    process.env.HF_ENDPOINT = "huggingface.co";
    expect(() => hubEndpoint()).toThrow(/HF_ENDPOINT: expected a URL/);

    expect(hubToken()).toBeUndefined();
    fs.writeFileSync(process.env.HF_TOKEN_PATH!, "hf_file\n");
    expect(hubToken()).toBe("hf_file");
    process.env.HUGGING_FACE_HUB_TOKEN = "hf_old";
    expect(hubToken()).toBe("hf_old");
    process.env.HF_TOKEN = "hf_new";
    expect(hubToken()).toBe("hf_new");
  });
});

describe("listing and planning", () => {
  test("selects config, tokenizer files and the shards the index names; skips the rest", async () => {
    const l = await listRepoFiles("acme/tiny-llama");
    expect(l.commit).toBe(hub.commitOf("acme/tiny-llama"));
    expect(l.files.map((f) => f.name)).toEqual(WANTED);
    expect(l.skipped).toEqual([".gitattributes", "README.md", "consolidated.safetensors", "onnx/model.onnx", "pytorch_model.bin"]);
    const shard = l.files.find((f) => f.name === "model-00001-of-00002.safetensors")!;
    expect(shard).toMatchObject({ size: SHARD1.length, lfs: true, sha256: crypto.createHash("sha256").update(SHARD1).digest("hex") });
    const cfg = l.files.find((f) => f.name === "config.json")!;
    expect(cfg.lfs).toBe(false);
    expect(cfg.gitSha1).toBe(crypto.createHash("sha1").update(`blob ${CONFIG.length}\0${CONFIG}`).digest("hex"));
    expect(hub.requests.map((r) => r.path)).toEqual([
      "/api/models/acme/tiny-llama/revision/main?blobs=true",
      `/acme/tiny-llama/resolve/${l.commit}/model.safetensors.index.json`,
    ]);
  });

  test("a repo with only pytorch_model.bin is refused: only safetensors are supported", async () => {
    const e = await rejection(listRepoFiles("acme/bin-only"));
    expect(e.code).toBe("unsupported");
    expect(e.message).toMatch(/acme\/bin-only@main: only safetensors checkpoints are supported.*pytorch_model\.bin/);
  });

  test("planPull gives the files, the total, what is left to download and where", async () => {
    const plan = await planPull("acme/tiny-llama");
    const total = llamaFiles()
      .filter((f) => WANTED.includes(f.name))
      .reduce((a, f) => a + Buffer.from(f.content!).length, 0);
    expect(plan).toMatchObject({
      repo: "acme/tiny-llama",
      revision: "main",
      commit: hub.commitOf("acme/tiny-llama"),
      totalBytes: total,
      bytesToDownload: total,
      offline: false,
    });
    expect(plan.dir).toBe(snapshotDir("acme/tiny-llama", plan.commit));
    expect(plan.files.every((f) => f.local === "missing")).toBe(true);
    expect(plan.freeBytes).toBeGreaterThan(0);
    expect(fs.existsSync(plan.dir)).toBe(false); // planning writes nothing
  });
});

describe("pull", () => {
  test("pulls the needed files byte for byte (LFS via a CDN on another origin); a second pull downloads nothing", async () => {
    const events: PullProgress[] = [];
    const dir = await pullModel("acme/tiny-llama", { onProgress: (p) => events.push(p) });
    const commit = hub.commitOf("acme/tiny-llama");
    expect(dir).toBe(snapshotDir("acme/tiny-llama", commit));
    expect(fs.readdirSync(dir).sort()).toEqual([...WANTED].sort());
    for (const f of llamaFiles().filter((f) => WANTED.includes(f.name))) {
      expect(fs.readFileSync(path.join(dir, f.name)).equals(Buffer.from(f.content!)), f.name).toBe(true);
    }
    expect(hub.bytesServed("pytorch_model.bin")).toBe(0);
    expect(hub.bytesServed("consolidated.safetensors")).toBe(0);
    expect(fs.readFileSync(path.join(home, "hub", "acme--tiny-llama", "refs", "main"), "utf8")).toBe(commit);
    // shards came from the CDN
    expect(hub.fileRequests("model-00001-of-00002.safetensors").map((r) => r.origin)).toEqual(["cdn"]);
    // progress: totals right, ends complete
    const last = events.at(-1)!;
    expect(last.bytes).toBe(last.total);
    expect(events.every((e) => e.bytes <= e.total && e.fileBytes <= e.fileTotal)).toBe(true);

    hub.requests.length = 0;
    const plan = await planPull("acme/tiny-llama");
    expect(plan.bytesToDownload).toBe(0);
    expect(plan.files.every((f) => f.local === "complete")).toBe(true);
    expect(await pullModel(plan)).toBe(dir);
    expect(hub.requests.filter((r) => r.path.includes("/resolve/") || r.origin === "cdn")).toEqual([]);
  });

  test("an interrupted download fails clearly, keeps .incomplete, and the next pull resumes it with Range", async () => {
    const name = "model-00001-of-00002.safetensors";
    hub.faults.push({ file: name, cutAfter: 128 * 1024, times: 1 });
    const e = await rejection(pullModel("acme/tiny-llama", { retries: 0 }));
    expect(e.code).toBe("network");
    expect(e.message).toMatch(new RegExp(`download of ${name.replace(/\./g, "\\.")} failed: .*kept in .*\\.incomplete: run the same pull again to resume`));
    const dir = snapshotDir("acme/tiny-llama", hub.commitOf("acme/tiny-llama"));
    expect(fs.existsSync(path.join(dir, name))).toBe(false);
    const have = fs.statSync(path.join(dir, `${name}.incomplete`)).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThanOrEqual(128 * 1024);
    expect(fs.existsSync(path.join(home, "hub", "acme--tiny-llama", "refs", "main"))).toBe(false);
    const plan = await planPull("acme/tiny-llama");
    expect(plan.files.find((f) => f.name === name)).toMatchObject({ local: "partial", localBytes: have });

    await pullModel("acme/tiny-llama");
    expect(fs.readFileSync(path.join(dir, name)).equals(SHARD1)).toBe(true);
    expect(fs.existsSync(path.join(dir, `${name}.incomplete`))).toBe(false);
    const reqs = hub.fileRequests(name);
    expect(reqs.at(-1)).toMatchObject({ range: `bytes=${have}-`, status: 206, bytes: SHARD1.length - have });
    expect(hub.bytesServed(name)).toBeLessThan(2 * SHARD1.length);
    expect(hub.bytesServed(name)).toBe(SHARD1.length + (reqs[0].bytes - have)); // nothing fetched twice except what the cut lost
  });

  test("a dropped connection is retried within the same pull, resuming; an attempt that made progress resets the retry count", async () => {
    const name = "model.safetensors";
    hub.faults.push({ file: name, cutAfter: 64 * 1024, times: 2 });
    const logs: string[] = [];
    // two cuts with retries: 1 succeed, because each cut attempt wrote bytes
    const dir = await pullModel("acme/small", { ...fast, retries: 1, log: (m) => logs.push(m) });
    const content = bytes(200_000, 11);
    expect(fs.readFileSync(path.join(dir, name)).equals(content)).toBe(true);
    const reqs = hub.fileRequests(name);
    expect(reqs.length).toBe(3);
    expect(reqs[1].range).toMatch(/^bytes=\d+-$/);
    expect(reqs[2].range).toMatch(/^bytes=\d+-$/);
    expect(logs.filter((l) => /model\.safetensors: .*retrying in/.test(l))).toHaveLength(2);
  });

  test("5xx answers are retried with backoff; a stalled connection is dropped after stallTimeoutMs and resumed", async () => {
    const name = "model.safetensors";
    hub.faults.push({ file: name, status: 503, times: 2 }, { file: "config.json", stallAfter: 10, times: 1 });
    const logs: string[] = [];
    const dir = await pullModel("acme/small", { ...fast, stallTimeoutMs: 300, log: (m) => logs.push(m) });
    expect(fs.readFileSync(path.join(dir, name)).equals(bytes(200_000, 11))).toBe(true);
    expect(fs.readFileSync(path.join(dir, "config.json"), "utf8")).toBe(CONFIG);
    expect(logs.join("\n")).toMatch(/HTTP 503/);
    expect(logs.join("\n")).toMatch(/config\.json: no data for 0\.3 s; retrying .* from byte 10/);
    expect(hub.fileRequests("config.json").at(-1)?.range).toBe("bytes=10-");
  });

  test("5xx that persist fail after the retries with the URL", async () => {
    hub.faults.push({ file: "model.safetensors", status: 500 });
    const e = await rejection(pullModel("acme/small", { retries: 2, retryDelayMs: 1 }));
    expect(e.message).toMatch(/download of model\.safetensors failed after 3 attempts: HTTP 500 .*\/cdn\//);
  });

  test("a server that ignores Range, and a partial bigger than the file, make it start over correctly", async () => {
    const name = "model.safetensors";
    const content = bytes(200_000, 11);
    const commit = hub.commitOf("acme/small");
    const dir = snapshotDir("acme/small", commit);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}.incomplete`), content.subarray(0, 50_000));
    fs.writeFileSync(path.join(dir, "tokenizer.model.incomplete"), Buffer.alloc(5_000)); // bigger than the 2,000-byte file
    hub.faults.push({ file: name, ignoreRange: true });
    await pullModel("acme/small");
    expect(fs.readFileSync(path.join(dir, name)).equals(content)).toBe(true);
    expect(fs.readFileSync(path.join(dir, "tokenizer.model")).equals(bytes(2_000, 10))).toBe(true);
    expect(hub.fileRequests(name)).toMatchObject([{ range: "bytes=50000-", status: 200 }]);
    expect(hub.fileRequests("tokenizer.model")[0].range).toBeUndefined();
  });

  test.each([
    ["model-00002-of-00002.safetensors", /expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}/],
    ["config.json", /expected git blob sha1 [0-9a-f]{40}, got [0-9a-f]{40}/],
  ])("wrong bytes for %s: the error names the file and the hashes; nothing is left", async (name, re) => {
    hub.faults.push({ file: name, corrupt: true });
    const e = await rejection(pullModel("acme/tiny-llama"));
    expect(e.code).toBe("checksum");
    expect(e.message).toContain(`checksum mismatch for ${name}`);
    expect(e.message).toMatch(re);
    expect(e.message).toMatch(/the download was removed/);
    const dir = snapshotDir("acme/tiny-llama", hub.commitOf("acme/tiny-llama"));
    expect(fs.existsSync(path.join(dir, name))).toBe(false);
    expect(fs.existsSync(path.join(dir, `${name}.incomplete`))).toBe(false);
  });

  test("unknown repo, revision and file: 404 messages with the URL", async () => {
    let e = await rejection(pullModel("acme/nope"));
    expect(e.code).toBe("not-found");
    expect(e.message).toBe(
      `repository not found: acme/nope: ${hub.url}/api/models/acme/nope/revision/main?blobs=true (the hub says: Repository not found: acme/nope)`,
    );
    e = await rejection(planPull("acme/small@v9"));
    expect(e.message).toMatch(/^revision not found: v9 of acme\/small: http:\/\/127\.0\.0\.1:\d+\/api\/models\/acme\/small\/revision\/v9/);
    hub.faults.push({ file: "config.json", status: 404 });
    e = await rejection(pullModel("acme/small"));
    expect(e.message).toMatch(/^file not found: config\.json in acme\/small@main: http:.*\/resolve\/[0-9a-f]{40}\/config\.json/);
  });

  test("a gated repo: 401 without a token says to set HF_TOKEN; a wrong token is refused; with HF_TOKEN it downloads, and the token never goes to the CDN", async () => {
    let e = await rejection(pullModel("acme/gated-llama"));
    expect(e.code).toBe("auth");
    expect(e.status).toBe(401);
    expect(e.message).toContain(
      "acme/gated-llama: gated or private repository: set HF_TOKEN (https://huggingface.co/settings/tokens) and accept the model's licence on its page",
    );
    expect(e.message).toContain(`${hub.url}/acme/gated-llama`);

    process.env.HF_TOKEN = "hf_wrong";
    e = await rejection(pullModel("acme/gated-llama"));
    expect(e.message).toMatch(/the token in HF_TOKEN was refused \(HTTP 401\)/);
    expect(e.message).not.toContain("hf_wrong");

    process.env.HF_TOKEN = "hf_secret";
    hub.requests.length = 0;
    const dir = await pullModel("acme/gated-llama");
    expect(fs.readFileSync(path.join(dir, "model.safetensors")).equals(bytes(120_000, 7))).toBe(true);
    const hubReqs = hub.requests.filter((r) => r.origin === "hub");
    const cdnReqs = hub.requests.filter((r) => r.origin === "cdn");
    expect(hubReqs.length).toBeGreaterThan(0);
    expect(hubReqs.every((r) => r.authorization === "Bearer hf_secret")).toBe(true);
    expect(cdnReqs.length).toBe(1);
    expect(cdnReqs[0].authorization).toBeUndefined();
  });

  test("abort mid-file: rejects as aborted, leaves no complete-looking file, and the next pull finishes it", async () => {
    const name = "model.safetensors";
    hub.faults.push({ file: name, stallAfter: 100_000, times: 1 });
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const e = await rejection(
      pullModel("acme/small", {
        signal: ac.signal,
        onProgress: (p) => {
          // the server stalls after 100,000 bytes: abort once they are all on disk
          if (p.file === name && p.fileBytes > 0 && !timer) {
            const part = path.join(snapshotDir("acme/small", hub.commitOf("acme/small")), `${name}.incomplete`);
            timer = setInterval(() => {
              if (fs.statSync(part).size === 100_000) {
                clearInterval(timer);
                ac.abort();
              }
            }, 20);
          }
        },
      }),
    );
    expect(e.code).toBe("aborted");
    expect(e.message).toMatch(
      /download of model\.safetensors \(100\.0 kB of 200\.0 kB kept in .*model\.safetensors\.incomplete; run the same pull again to resume\) interrupted/,
    );
    const dir = snapshotDir("acme/small", hub.commitOf("acme/small"));
    expect(fs.existsSync(path.join(dir, name))).toBe(false);
    expect(fs.statSync(path.join(dir, `${name}.incomplete`)).size).toBe(100_000);
    expect(listCachedModels().find((m) => m.name === "acme/small")?.complete).toBe(false);

    await pullModel("acme/small");
    expect(fs.readFileSync(path.join(dir, name)).equals(bytes(200_000, 11))).toBe(true);
    expect(hub.fileRequests(name).at(-1)?.range).toBe("bytes=100000-");
  });

  test("an AbortSignal that fired before the pull stops it before any download", async () => {
    const e = await rejection(pullModel("acme/small", { signal: AbortSignal.abort() }));
    expect(e.code).toBe("aborted");
    expect(hub.requests).toEqual([]);
  });

  test("a new commit on main: unchanged files are hard-linked from the old snapshot, changed ones downloaded", async () => {
    const old = await pullModel("acme/tiny-llama");
    const files = llamaFiles().map((f) => (f.name === "config.json" ? { ...f, content: CONFIG.replace("64", "128") } : f));
    const commit = hub.commit({ id: "acme/tiny-llama", files });
    try {
      hub.requests.length = 0;
      const plan = await planPull("acme/tiny-llama");
      expect(plan.commit).toBe(commit);
      expect(plan.bytesToDownload).toBe(CONFIG.length + 1);
      expect(plan.files.filter((f) => f.local === "link").length).toBe(WANTED.length - 1);
      const dir = await pullModel(plan);
      expect(dir).not.toBe(old);
      expect(fs.readFileSync(path.join(dir, "config.json"), "utf8")).toContain("128");
      expect(fs.statSync(path.join(dir, "model-00001-of-00002.safetensors")).ino).toBe(fs.statSync(path.join(old, "model-00001-of-00002.safetensors")).ino);
      expect(hub.requests.filter((r) => r.file && r.file !== "config.json")).toEqual([]);
      expect(fs.readFileSync(path.join(home, "hub", "acme--tiny-llama", "refs", "main"), "utf8")).toBe(commit);
      // removing the old snapshot frees only what it does not share
      const oldCommit = path.basename(old);
      const oldManifest = fs.statSync(path.join(home, "hub", "acme--tiny-llama", "manifests", `${oldCommit}.json`)).size;
      expect(removeCachedModel(`acme/tiny-llama@${oldCommit}`)).toBe(CONFIG.length + oldManifest);
      expect(fs.existsSync(old)).toBe(false);
      expect(fs.readFileSync(path.join(dir, "model-00001-of-00002.safetensors")).equals(SHARD1)).toBe(true);
    } finally {
      hub.commit({ id: "acme/tiny-llama", files: llamaFiles() }); // back to the original content (a new commit)
    }
  });

  test("without the hub (unreachable or HF_HUB_OFFLINE=1) a complete cached snapshot is used; otherwise a clear error", async () => {
    const dir = await pullModel("acme/small");
    const port = await closedPort();
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    const logs: string[] = [];
    expect(await pullModel("acme/small", { retries: 0, log: (m) => logs.push(m) })).toBe(dir);
    expect(logs.join("\n")).toMatch(new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port} .*; using the cached acme/small@main`));
    const e = await rejection(pullModel("acme/tiny-llama", { retries: 0 }));
    expect(e.code).toBe("network");
    expect(e.message).toBe(
      `cannot reach http://127.0.0.1:${port} (http://127.0.0.1:${port}/api/models/acme/tiny-llama/revision/main?blobs=true): connect ECONNREFUSED 127.0.0.1:${port}`,
    );
    process.env.HF_HUB_OFFLINE = "1";
    expect((await planPull("acme/small")).offline).toBe(true);
    await expect(planPull("acme/tiny-llama")).rejects.toThrow(/acme\/tiny-llama@main is not in the cache .* HF_HUB_OFFLINE is set/);
  });
});

describe("disk full (a 1 MiB tmpfs)", () => {
  let mnt: string | null = null;
  let mountError = "";
  beforeAll(() => {
    const d = tmpDir("text2sql-tmpfs-");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", d], { stdio: "pipe" });
      mnt = d;
    } catch (e) {
      mountError = String((e as { stderr?: Buffer }).stderr ?? e).trim();
    }
  });
  afterAll(() => {
    if (mnt) execFileSync("umount", [mnt]);
  });

  test("not enough free space for the plan: fails before downloading, saying where and how much", async ({ skip }) => {
    if (!mnt) return skip(`cannot mount a tmpfs (needs root): ${mountError}`);
    process.env.TEXT2SQL_HOME = mnt;
    const big = "acme/big";
    hub.commit({
      id: big,
      files: [
        { name: "config.json", content: CONFIG },
        { name: "tokenizer.json", content: "{}" },
        { name: "model.safetensors", content: bytes(2_000_000, 12) },
      ],
    });
    const e = await rejection(pullModel(big));
    expect(e.code).toBe("disk-full");
    const dir = path.join(mnt, "hub", "acme--big", hub.commitOf(big));
    expect(e.message).toMatch(
      new RegExp(`^not enough disk space in ${dir}: the download needs 2\\.0 MB \\(${2_000_000 + CONFIG.length + 2} bytes\\) more, [\\d.]+ [kM]B free`),
    );
    expect(e.message).toContain("TEXT2SQL_HOME");
    expect(hub.requests.filter((r) => r.file)).toEqual([]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("the disk fills up during the download (ENOSPC): clear message, the partial file removed, no corrupt file", async ({ skip }) => {
    if (!mnt) return skip(`cannot mount a tmpfs (needs root): ${mountError}`);
    process.env.TEXT2SQL_HOME = mnt;
    fs.rmSync(path.join(mnt, "hub"), { recursive: true, force: true });
    const filler = path.join(mnt, "filler");
    const name = "model.safetensors";
    const e = await rejection(
      pullModel("acme/small", {
        onProgress: (p) => {
          // another program takes the rest of the disk after the first chunk is written
          if (p.file === name && p.fileBytes > 0 && !fs.existsSync(filler)) {
            const st = fs.statfsSync(mnt!);
            try {
              fs.writeFileSync(filler, Buffer.alloc(st.bavail * st.bsize));
            } catch {
              /* full */
            }
          }
        },
      }),
    );
    fs.rmSync(filler, { force: true });
    expect(e.code).toBe("disk-full");
    const dir = path.join(mnt, "hub", "acme--small", hub.commitOf("acme/small"));
    expect(e.message).toMatch(
      new RegExp(
        `^not enough disk space in ${dir}: the download needs 200\\.0 kB \\(200000 bytes\\) more, .* free; the partial file model\\.safetensors\\.incomplete was removed`,
      ),
    );
    expect(fs.readdirSync(dir).sort()).toEqual(["config.json", "tokenizer.model"]); // the files before it, verified
    // with space again, the pull completes
    const again = await pullModel("acme/small");
    expect(fs.readFileSync(path.join(again, name)).equals(bytes(200_000, 11))).toBe(true);
  });
});

describe("cached models", () => {
  test("list shows snapshots (complete or not) and converted GGUFs; remove frees them and names what exists when not found", async () => {
    expect(listCachedModels()).toEqual([]);
    expect(() => removeCachedModel("acme/small")).toThrow(/no cached model named "acme\/small"; the cache \(.*\) holds no models/);

    const small = await pullModel("acme/small");
    hub.faults.push({ file: "model-00001-of-00002.safetensors", cutAfter: 1000, times: 1 });
    await expect(pullModel("acme/tiny-llama", { retries: 0 })).rejects.toThrow(/resume/);
    fs.mkdirSync(path.join(home, "models"), { recursive: true });
    fs.writeFileSync(path.join(home, "models", "tinyllama.bf16.gguf"), Buffer.alloc(1234));

    const list = listCachedModels();
    const smallBytes = 200_000 + 2_000 + CONFIG.length;
    expect(list).toEqual([
      { kind: "hf", name: "acme/small", commit: hub.commitOf("acme/small"), revisions: ["main"], path: small, bytes: smallBytes, complete: true },
      expect.objectContaining({ kind: "hf", name: "acme/tiny-llama", commit: hub.commitOf("acme/tiny-llama"), revisions: [], complete: false }),
      { kind: "gguf", name: "tinyllama.bf16.gguf", revisions: [], path: path.join(home, "models", "tinyllama.bf16.gguf"), bytes: 1234, complete: true },
    ]);

    expect(() => removeCachedModel("acme/other")).toThrow(
      /no cached model named "acme\/other"; cached: acme\/small@main, acme\/tiny-llama@[0-9a-f]{40}, tinyllama\.bf16\.gguf/,
    );
    expect(() => removeCachedModel("nothing.gguf")).toThrow(/cached: acme\/small@main/);
    const manifest = fs.statSync(path.join(home, "hub", "acme--small", "manifests", `${hub.commitOf("acme/small")}.json`)).size;
    expect(removeCachedModel("acme/small")).toBe(smallBytes + manifest + hub.commitOf("acme/small").length);
    expect(fs.existsSync(path.join(home, "hub", "acme--small"))).toBe(false);
    expect(removeCachedModel("tinyllama.bf16")).toBe(1234);
    expect(listCachedModels().map((m) => m.name)).toEqual(["acme/tiny-llama"]);
  });
});

describe("progress display", () => {
  test("formatBytes uses decimal units", () => {
    expect(formatBytes(999)).toBe("999 B");
    expect(formatBytes(2_200_000_000)).toBe("2.2 GB");
    expect(formatBytes(1_500)).toBe("1.5 kB");
  });

  test("progressBarReporter prints plain lines without a TTY: one per finished file", async () => {
    const out: string[] = [];
    const stream = { isTTY: false, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
    const r = progressBarReporter({ stream });
    await pullModel("acme/small", { onProgress: r.onProgress });
    r.stop();
    expect(out).toHaveLength(3);
    expect(out[2]).toMatch(/^pull 202\.\d kB\/202\.\d kB \(100%\) \| .*\/s \| ETA 0s \| model\.safetensors done\n$/);
  });

  test("progressBarReporter draws a cli-progress bar on a TTY", async () => {
    let out = "";
    const stream = {
      isTTY: true,
      columns: 200,
      write: (s: string) => ((out += s), true),
      cursorTo: () => true,
      clearLine: () => true,
      clearScreenDown: () => true,
      moveCursor: () => true,
    } as unknown as NodeJS.WriteStream;
    const r = progressBarReporter({ stream });
    await pullModel("acme/small", { onProgress: r.onProgress });
    r.stop();
    expect(out).toMatch(/pull \|█+\| 100% \| 202\.\d kB\/202\.\d kB \| [\d.]+ [kMG]?B\/s \| ETA 0s \| model\.safetensors/);
  });
});
