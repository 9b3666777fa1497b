// model.path forms and `text2sql model ...` end to end, through the real CLI (dist/src/cli/main.js)
// against a local hub (test/helpers/hub-server.ts): a hub repository is downloaded after --yes (and
// refused without it when nobody can be asked), converted once and reused; a local checkpoint
// folder is converted once; an hf: URI goes through node-llama-cpp's downloader; Ctrl-C during a
// download keeps the partial file and the next pull resumes it; list, rm and convert.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { makeHfCheckpoint } from "../scripts/make-hf-checkpoint.js";
import { readGguf, readTensorBytes } from "../src/formats/gguf.js";
import { formatBytes } from "../src/util/format.js";
import { Tokenizer } from "../src/train/prompt.js";
import { startHubServer, type FakeFile, type HubServer } from "./helpers/hub-server.js";
import { tempDir, testModel } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

let hub: HubServer;
let home: string;
let work: string;
let gguf: string;
let hfDir: string;
let hfFiles: FakeFile[];
let data: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cliEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, TEXT2SQL_HOME: home, HF_ENDPOINT: hub.url, ...extra };
  for (const k of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TEXT2SQL_YES", "MODEL_ENDPOINT"]) if (!extra[k]) delete env[k];
  env.HF_TOKEN_PATH = path.join(work, "no-token"); // never a real login token
  return env;
}

/** The CLI on a pseudo-terminal (util-linux `script`), answering `answer` to the download question. */
function cliOnTerminal(args: string[], answer: string): Promise<{ code: number | null; output: string; asked: boolean }> {
  return new Promise((resolve) => {
    const cmd = [process.execPath, "dist/src/cli/main.js", ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    const p = spawn("script", ["-qefc", cmd, "/dev/null"], { cwd: ROOT, env: cliEnv(), stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    let asked = false;
    p.stdout.on("data", (d) => {
      output += d;
      if (!asked && output.includes("Download? [y/N]")) {
        asked = true;
        p.stdin.write(`${answer}\r`);
      }
    });
    p.stderr.on("data", (d) => (output += d));
    p.on("close", (code) => resolve({ code, output, asked }));
  });
}

const hasScript = (() => {
  try {
    return fs.existsSync("/usr/bin/script") || fs.existsSync("/bin/script");
  } catch {
    return false;
  }
})();

function cli(args: string[], o: { env?: Record<string, string>; onStart?: (kill: (sig: NodeJS.Signals) => void) => void } = {}): Promise<Run> {
  return new Promise((resolve) => {
    // stdin is not a terminal: nobody can be asked
    const p = spawn(process.execPath, ["dist/src/cli/main.js", ...args], { cwd: ROOT, env: cliEnv(o.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    o.onStart?.((sig) => p.kill(sig));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const trainArgs = (model: string, out: string, extra: string[] = []) => [
  "train",
  "--model",
  model,
  "--data",
  data,
  "--output",
  path.join(work, out),
  "--max-steps",
  "2",
  "--threads",
  "1",
  "--set",
  "train.batch_size=2",
  "--set",
  "train.grad_accum=1",
  "--set",
  "train.eval_every=0",
  "--set",
  "train.save_every=0",
  "--set",
  "data.split=[0.8, 0.2, 0]",
  ...extra,
];

const ggufsIn = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".gguf")) : []);

beforeAll(async () => {
  work = tempDir("t2s-model-cli-");
  home = path.join(work, "home");
  gguf = await testModel({ type: "f32" });
  hfDir = path.join(work, "tiny-hf");
  await makeHfCheckpoint({ gguf, dir: hfDir, dtype: "f32" });
  hfFiles = fs.readdirSync(hfDir).map((name) => ({ name, path: path.join(hfDir, name) }));
  hub = await startHubServer([
    { id: "owner/tiny", files: hfFiles },
    { id: "owner/stall", files: hfFiles },
    { id: "owner/ask", files: hfFiles },
    {
      id: "owner/ggufs",
      files: [
        { name: "README.md", content: "# a GGUF repo\n" },
        { name: "model.gguf", path: gguf },
      ],
    },
  ]);
  const rows = Array.from({ length: 40 }, (_, i) => `How many rows in table t${i}?,SELECT count(*) FROM t${i}`);
  data = path.join(work, "d.csv");
  fs.writeFileSync(data, ["text_query,sql_command", ...rows].join("\n") + "\n");
});

afterAll(async () => {
  await hub?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("model.path: a hub repository", () => {
  test("without --yes and without a terminal: an error naming the size, the folder and --yes; nothing is downloaded", async () => {
    const r = await cli(trainArgs("owner/tiny", "no"));
    expect(r.code).not.toBe(0);
    const commit = hub.commitOf("owner/tiny");
    const size = hfFiles.reduce((a, f) => a + fs.statSync(f.path!).size, 0);
    expect(r.stderr).toContain(
      `owner/tiny@main is not in the cache: will download ${hfFiles.length} files, ${formatBytes(size)} to ${path.join(home, "hub", "owner--tiny", commit)}`,
    );
    expect(r.stderr).toMatch(/Rerun with --yes/);
    expect(r.stderr).toContain(formatBytes(size));
    expect(r.stderr).toContain(path.join(home, "hub", "owner--tiny", commit));
    for (const f of hfFiles) expect(hub.fileRequests(f.name), f.name).toEqual([]);
    expect(fs.existsSync(path.join(home, "hub", "owner--tiny", commit))).toBe(false);
    expect(fs.existsSync(path.join(work, "no", "final_model"))).toBe(false);
  });

  test("train --model owner/tiny --yes downloads, converts and trains; a second run downloads nothing and reuses the GGUF", async () => {
    const commit = hub.commitOf("owner/tiny");
    const first = await cli(trainArgs("owner/tiny", "a", ["--yes"]));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/model\.path: owner\/tiny@main is not in the cache: will download \d+ files/);
    expect(first.stderr).toMatch(/model\.path: downloaded owner\/tiny@main \(commit [0-9a-f]{10}\) in \d+\.\d s/);
    expect(first.stderr).toMatch(/model\.path: converted .* to F32 in \d+\.\d s/);
    const file = path.join(home, "models", `owner--tiny-${commit.slice(0, 10)}-auto.gguf`);
    expect(fs.existsSync(file)).toBe(true);
    expect(first.stderr).toContain(`model: ${file}`);
    expect(fs.existsSync(path.join(work, "a", "final_model", "adapter.gguf"))).toBe(true);
    // the converted GGUF records the repository: the PEFT export names it as the base model
    const peft = JSON.parse(fs.readFileSync(path.join(work, "a", "final_model", "adapter_config.json"), "utf8"));
    expect(peft.base_model_name_or_path).toBe("owner/tiny");
    for (const f of hfFiles) expect(hub.fileRequests(f.name).length, f.name).toBeGreaterThan(0);
    // the GGUF's tensors are the original model's
    const a = readGguf(file);
    const b = readGguf(gguf);
    for (const t of b.tensors) {
      const u = a.tensors.find((x) => x.name === t.name);
      if (!u) continue; // output.weight of a tied model
      expect(Buffer.from(readTensorBytes(a, u)).equals(Buffer.from(readTensorBytes(b, t))), t.name).toBe(true);
    }

    hub.requests.length = 0;
    const mtime = fs.statSync(file).mtimeMs;
    const second = await cli(trainArgs("owner/tiny", "b"));
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`model.path: owner/tiny@main (commit ${commit.slice(0, 10)}) was converted before: ${file}`);
    expect(second.stderr).not.toMatch(/will download|converting/);
    expect(hub.requests.filter((q) => q.file !== undefined)).toEqual([]); // metadata only
    expect(fs.statSync(file).mtimeMs).toBe(mtime);
  });

  test("model list shows the repository and the converted GGUF; model rm removes both", async () => {
    const commit = hub.commitOf("owner/tiny");
    const name = `owner--tiny-${commit.slice(0, 10)}-auto.gguf`;
    const list = await cli(["model", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^NAME +KIND +SIZE +REVISION \/ SOURCE +PATH$/m);
    expect(list.stdout).toMatch(new RegExp(`^owner/tiny +hf +\\d+\\.\\d [kM]B +main -> ${commit.slice(0, 10)} `, "m"));
    expect(list.stdout).toMatch(
      new RegExp(`^${name} +gguf +\\d+\\.\\d [kM]B +from owner/tiny @ ${commit.slice(0, 10)} \\(auto\\) +${path.join(home, "models", name)}$`, "m"),
    );
    const json = JSON.parse((await cli(["model", "list", "--json"])).stdout) as { kind: string; name: string; bytes: number }[];
    const snapshotBytes = json.find((m) => m.kind === "hf" && m.name === "owner/tiny")!.bytes;
    const ggufBytes = json.find((m) => m.name === name)!.bytes;
    expect(snapshotBytes).toBeGreaterThan(0);

    const rm = await cli(["model", "rm", "owner/tiny"]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`removed ${path.join(home, "models", name)}`);
    expect(rm.stdout).toMatch(/freed .* \((\d+) bytes\)/);
    const freed = Number(/\((\d+) bytes\)/.exec(rm.stdout)![1]);
    expect(freed).toBeGreaterThanOrEqual(snapshotBytes + ggufBytes);
    const after = await cli(["model", "list", "--json"]);
    expect((JSON.parse(after.stdout) as { name: string }[]).map((m) => m.name)).not.toContain("owner/tiny");
    expect(fs.existsSync(path.join(home, "models", name))).toBe(false);
    const again = await cli(["model", "rm", "owner/tiny"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no cached model named "owner\/tiny"/);
  });

  test.skipIf(!hasScript)("on a terminal it asks before downloading: no downloads nothing, yes downloads", async () => {
    hub.requests.length = 0;
    const no = await cliOnTerminal(["data", "--model", "owner/ask", "--data", data], "n");
    expect(no.asked, no.output).toBe(true);
    expect(no.code).toBe(1);
    expect(no.output).toMatch(/model\.path: owner\/ask@main is not in the cache: will download \d+ files, [\d.]+ MB to /);
    expect(no.output).toMatch(/the download of owner\/ask@main was declined/);
    expect(hub.requests.filter((q) => q.file !== undefined)).toEqual([]); // metadata only
    const yes = await cliOnTerminal(["data", "--model", "owner/ask", "--data", data], "y");
    expect(yes.asked, yes.output).toBe(true);
    expect(yes.code, yes.output).toBe(0);
    expect(yes.output).toMatch(/converted .* to F32/);
    expect(yes.output).toMatch(/rows read +40/);
    expect(ggufsIn(path.join(home, "models")).filter((f) => f.startsWith("owner--ask-"))).toHaveLength(1);
  });

  test("Ctrl-C during a download exits 130 and keeps the partial file; the next pull resumes it", async () => {
    const big = hfFiles.reduce((a, f) => (fs.statSync(f.path!).size > fs.statSync(a.path!).size ? f : a));
    const size = fs.statSync(big.path!).size;
    const stallAt = 256 * 1024;
    expect(size).toBeGreaterThan(2 * stallAt);
    hub.faults.push({ file: big.name, stallAfter: stallAt, times: 1 });
    hub.requests.length = 0;
    let timer: NodeJS.Timeout | undefined;
    const r = await cli(["model", "pull", "owner/stall", "--no-convert"], {
      onStart: (kill) => {
        // once the server has sent what it will send of the big file, press Ctrl-C
        timer = setInterval(() => {
          if (hub.bytesServed(big.name) >= stallAt) {
            clearInterval(timer);
            setTimeout(() => kill("SIGINT"), 300);
          }
        }, 50);
      },
    });
    clearInterval(timer);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/stopping the download/);
    expect(r.stderr).toMatch(/download interrupted; the partial download is kept and resumes when you run the command again/);
    const snap = path.join(home, "hub", "owner--stall", hub.commitOf("owner/stall"));
    const part = path.join(snap, `${big.name}.incomplete`);
    expect(fs.statSync(part).size).toBe(stallAt);

    hub.requests.length = 0;
    const again = await cli(["model", "pull", "owner/stall"]);
    expect(again.code, again.stderr).toBe(0);
    const reqs = hub.fileRequests(big.name);
    expect(reqs.map((q) => q.range)).toEqual([`bytes=${stallAt}-`]);
    expect(hub.bytesServed(big.name)).toBe(size - stallAt);
    expect(fs.statSync(path.join(snap, big.name)).size).toBe(size);
    expect(again.stdout).toContain(`snapshot  ${snap}`);
    expect(again.stdout).toMatch(/^gguf +.*owner--stall-[0-9a-f]{10}-auto\.gguf$/m);
    // one revision: its snapshot and its GGUF
    const rm = await cli(["model", "rm", "owner/stall@main"]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`removed ${snap}`);
    expect(rm.stdout).toMatch(/removed .*owner--stall-[0-9a-f]{10}-auto\.gguf/);
    expect(fs.existsSync(snap)).toBe(false);
    expect(ggufsIn(path.join(home, "models")).filter((f) => f.startsWith("owner--stall-"))).toEqual([]);
  });
});

describe("model.path: other forms", () => {
  test("a local Hugging Face folder is converted once (cached) and trains", async () => {
    const first = await cli(trainArgs(hfDir, "local1"));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/model\.path: converting .*tiny-hf to GGUF \(the checkpoint's precision\)/);
    expect(first.stderr).toMatch(/model\.path: converted .*tiny-hf to F32 in \d+\.\d s/);
    const converted = ggufsIn(path.join(home, "models", "converted"));
    expect(converted).toHaveLength(1);
    expect(converted[0]).toMatch(/^tiny-hf-[0-9a-f]{8}-[0-9a-f]{8}-auto\.gguf$/);
    expect(fs.existsSync(path.join(work, "local1", "final_model", "adapter.gguf"))).toBe(true);

    const second = await cli(trainArgs(hfDir, "local2"));
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/model\.path: .*tiny-hf was converted before: .*converted/);
    expect(second.stderr).not.toMatch(/converting/);
    expect(ggufsIn(path.join(home, "models", "converted"))).toEqual(converted);

    // another dtype is another GGUF
    const bf16 = await cli(["data", "--model", hfDir, "--data", data, "--dtype", "bf16"]);
    expect(bf16.code, bf16.stderr).toBe(0);
    expect(bf16.stderr).toMatch(/converted .* to BF16/);
    expect(ggufsIn(path.join(home, "models", "converted")).filter((f) => f.endsWith("-bf16.gguf"))).toHaveLength(1);
  });

  test("model convert writes a GGUF equal to the cached conversion, that node-llama-cpp loads", async () => {
    const out = path.join(work, "convert", "tiny.gguf");
    const r = await cli(["model", "convert", hfDir, "--output", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    const cached = path.join(
      home,
      "models",
      "converted",
      ggufsIn(path.join(home, "models", "converted")).find((f) => f.endsWith("-auto.gguf"))!,
    );
    expect(fs.readFileSync(out).equals(fs.readFileSync(cached))).toBe(true);
    const tok = await Tokenizer.load(out);
    try {
      expect(tok.encode("SELECT count(*) FROM t1").length).toBeGreaterThan(3);
    } finally {
      await tok.dispose();
    }
    // without --output: the cache, where --model finds it
    const c = await cli(["model", "convert", hfDir]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.trim()).toBe(cached);
    expect(c.stderr).toMatch(/was converted before/);
  });

  test("hf:owner/repo/file.gguf is downloaded by node-llama-cpp into the cache once", async () => {
    hub.requests.length = 0;
    const r = await cli(["info", "hf:owner/ggufs/model.gguf", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const dir = path.join(home, "models", "gguf");
    const files = ggufsIn(dir);
    expect(files).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, files[0])).equals(fs.readFileSync(gguf))).toBe(true);
    expect(r.stderr).toMatch(/hf:owner\/ggufs\/model\.gguf is not in the cache: downloading .* to /);
    expect(JSON.parse(r.stdout).nLayer).toBeGreaterThan(0);
    expect(hub.fileRequests("model.gguf").length).toBeGreaterThan(0);

    hub.requests.length = 0;
    const again = await cli(["info", "hf:owner/ggufs/model.gguf", "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(hub.requests).toEqual([]);
    const list = await cli(["model", "list"]);
    expect(list.stdout).toContain(`gguf/${files[0]}`);
    const rm = await cli(["model", "rm", `gguf/${files[0]}`]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`freed ${formatBytes(fs.statSync(gguf).size)}`);
    expect(ggufsIn(dir)).toEqual([]);
  });

  test("a path that is none of the forms names the accepted forms", async () => {
    const r = await cli(["data", "--model", "not a model", "--data", data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.path: "not a model" is not a file or folder .*; expected a GGUF file .* a hub repository .* builtin:tiny/);
    const g = await cli(["data", "--model", "missing/model.gguf", "--data", data]);
    expect(g.stderr).toMatch(/model\.path: file not found: missing\/model\.gguf/);
    const h = await cli(["data", "--model", "owner/nope", "--data", data, "--yes"]);
    expect(h.stderr).toMatch(/repository not found: owner\/nope/);
  });
});
