// A local stand-in for the Hugging Face hub (node:http on 127.0.0.1, port 0) for the pull tests.
// Serves hub-shaped URLs for repos held in memory or on disk:
//   GET /api/models/<owner>/<name>/revision/<rev>?blobs=true   {id, sha, siblings: [...]}
//   GET|HEAD /<owner>/<name>/resolve/<rev>/<file>              the file (Range), or a 302 to the CDN
//   GET /cdn/<sha256>                                          LFS content (on a second origin by default)
// with the hub's headers (ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code), gated
// repos (401 without `Authorization: Bearer <token>`), and faults: cut the connection after N
// bytes, stall after N bytes, wrong bytes, an HTTP status, ignore Range. Every request is logged.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeFile {
  name: string;
  /** in-memory content ... */
  content?: Buffer | string;
  /** ... or a file on disk, read in chunks when served */
  path?: string;
  /** stored in LFS; default: *.safetensors, *.bin, *.model, *.gguf */
  lfs?: boolean;
}

export interface FakeRepo {
  /** "owner/name" */
  id: string;
  files: FakeFile[];
  /** gated: the API and resolve URLs want this Bearer token (the CDN's URLs are "signed") */
  token?: string;
  /** the branch the files are committed to; default main */
  branch?: string;
}

export interface Fault {
  /** the file it applies to (its name in the repo) */
  file: string;
  /** send this many bytes of the body, then destroy the connection */
  cutAfter?: number;
  /** send this many bytes of the body, then hold the connection open and send nothing */
  stallAfter?: number;
  /** send wrong bytes (same length) */
  corrupt?: boolean;
  /** answer with this HTTP status instead of the file */
  status?: number;
  /** answer 200 with the whole file even when a Range is asked */
  ignoreRange?: boolean;
  /** how many responses it applies to; default: every one */
  times?: number;
}

export interface LoggedRequest {
  method: string;
  /** the path and query */
  path: string;
  /** which listener got it: the hub or the CDN */
  origin: "hub" | "cdn";
  range?: string;
  authorization?: string;
  status: number;
  /** the repo file served, if any */
  file?: string;
  /** body bytes sent */
  bytes: number;
}

interface Entry {
  name: string;
  size: number;
  sha256: string;
  blobId: string;
  lfs: boolean;
  read: (start: number, length: number) => Buffer;
}

interface RepoState {
  id: string;
  token?: string;
  branches: Map<string, string>;
  commits: Map<string, Map<string, Entry>>;
}

export interface HubServer {
  /** the hub's base URL (HF_ENDPOINT) */
  url: string;
  /** the CDN's base URL */
  cdnUrl: string;
  requests: LoggedRequest[];
  /** faults in force; edit freely */
  faults: Fault[];
  /** commits `files` as a new commit of `id` on `branch` (default main); returns the commit */
  commit: (repo: FakeRepo) => string;
  /** the commit a branch of a repo points to */
  commitOf: (id: string, branch?: string) => string;
  /** body bytes served for a file name, over the requests in `requests` (clear it to start counting again) */
  bytesServed: (file: string) => number;
  /** the requests that fetched a file's content (resolve without redirect, or CDN) */
  fileRequests: (file: string) => LoggedRequest[];
  close: () => Promise<void>;
}

const CHUNK = 64 * 1024;

function makeEntry(f: FakeFile): Entry {
  const lfs = f.lfs ?? /\.(safetensors|bin|model|gguf)$/.test(f.name);
  let size: number;
  let read: Entry["read"];
  const sha256 = crypto.createHash("sha256");
  if (f.path !== undefined) {
    const p = f.path;
    size = fs.statSync(p).size;
    read = (start, length) => {
      const buf = Buffer.alloc(length);
      const fd = fs.openSync(p, "r");
      try {
        fs.readSync(fd, buf, 0, length, start);
      } finally {
        fs.closeSync(fd);
      }
      return buf;
    };
  } else {
    const content = Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content ?? "");
    size = content.length;
    read = (start, length) => content.subarray(start, start + length);
  }
  const blob = crypto.createHash("sha1").update(`blob ${size}\0`);
  for (let pos = 0; pos < size; pos += 1 << 20) {
    const b = read(pos, Math.min(1 << 20, size - pos));
    sha256.update(b);
    blob.update(b);
  }
  return { name: f.name, size, sha256: sha256.digest("hex"), blobId: blob.digest("hex"), lfs, read };
}

/** Starts the fake hub with `repos` committed; a second listener plays the CDN (another origin). */
export async function startHubServer(repos: FakeRepo[], o: { redirectLfs?: boolean; cdnSameOrigin?: boolean } = {}): Promise<HubServer> {
  const redirectLfs = o.redirectLfs ?? true;
  const state = new Map<string, RepoState>();
  const requests: LoggedRequest[] = [];
  const faults: Fault[] = [];
  let commits = 0;

  const commit = (r: FakeRepo): string => {
    let rs = state.get(r.id);
    if (!rs) state.set(r.id, (rs = { id: r.id, token: r.token, branches: new Map(), commits: new Map() }));
    if (r.token !== undefined) rs.token = r.token;
    const sha = crypto.createHash("sha1").update(`${r.id}:${++commits}`).digest("hex");
    rs.commits.set(sha, new Map(r.files.map((f) => [f.name, makeEntry(f)])));
    rs.branches.set(r.branch ?? "main", sha);
    return sha;
  };
  for (const r of repos) commit(r);

  const takeFault = (file: string): Fault | undefined => {
    const i = faults.findIndex((f) => f.file === file);
    if (i < 0) return undefined;
    const f = faults[i];
    if (f.times !== undefined && --f.times <= 0) faults.splice(i, 1);
    return f;
  };

  const findLfs = (sha256: string): Entry | undefined => {
    for (const rs of state.values()) for (const files of rs.commits.values()) for (const e of files.values()) if (e.lfs && e.sha256 === sha256) return e;
    return undefined;
  };

  const error = (res: http.ServerResponse, log: LoggedRequest, status: number, code: string, message: string) => {
    log.status = status;
    res.writeHead(status, { "content-type": "application/json", "x-error-code": code, "x-error-message": message });
    res.end(JSON.stringify({ error: message }));
  };

  const waitDrain = (res: http.ServerResponse) =>
    new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });

  /** sends `e` (with Range and faults), logging the bytes */
  const sendFile = async (req: http.IncomingMessage, res: http.ServerResponse, log: LoggedRequest, e: Entry, headers: Record<string, string>) => {
    log.file = e.name;
    const fault = takeFault(e.name);
    if (fault?.status) return error(res, log, fault.status, "Fault", `injected HTTP ${fault.status}`);
    let start = 0;
    let end = e.size - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range && !fault?.ignoreRange) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
      if (start >= e.size || start > end) {
        log.status = 416;
        res.writeHead(416, { ...headers, "content-range": `bytes */${e.size}` });
        return void res.end();
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${end}/${e.size}`;
    }
    log.status = status;
    res.writeHead(status, { ...headers, "content-type": "application/octet-stream", "content-length": String(end + 1 - start), "accept-ranges": "bytes" });
    if (req.method === "HEAD") return void res.end();
    const limit = fault?.cutAfter ?? fault?.stallAfter ?? Infinity;
    let sent = 0;
    for (let pos = start; pos <= end && sent < limit;) {
      if (res.destroyed) return;
      const n = Math.min(CHUNK, end + 1 - pos, limit - sent);
      let buf = e.read(pos, n);
      if (fault?.corrupt) buf = Buffer.from(buf.map((b) => b ^ 0x5a));
      const ok = res.write(buf);
      pos += n;
      sent += n;
      log.bytes += n;
      if (!ok) await waitDrain(res);
    }
    if (fault?.cutAfter !== undefined && sent >= limit) {
      // flush what was written, then drop the connection mid-body
      await new Promise<void>((resolve) => res.write("", () => resolve()));
      req.socket.destroy();
      return;
    }
    if (fault?.stallAfter !== undefined && sent >= limit) return; // hold the connection open
    res.end();
  };

  const authorized = (req: http.IncomingMessage, rs: RepoState) => !rs.token || req.headers.authorization === `Bearer ${rs.token}`;

  const handle = async (origin: "hub" | "cdn", req: http.IncomingMessage, res: http.ServerResponse) => {
    const u = new URL(req.url ?? "/", "http://x");
    const log: LoggedRequest = {
      method: req.method ?? "GET",
      path: `${u.pathname}${u.search}`,
      origin,
      status: 0,
      bytes: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    };
    requests.push(log);
    const parts = u.pathname.split("/").slice(1).map(decodeURIComponent);

    if (parts[0] === "cdn" && parts.length === 2) {
      const e = findLfs(parts[1]);
      if (!e) return error(res, log, 404, "EntryNotFound", "no such object");
      return sendFile(req, res, log, e, { etag: `"${e.sha256}"` });
    }
    if (origin === "cdn") return error(res, log, 404, "NotFound", "the CDN serves /cdn/<sha256> only");

    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "revision" && parts.length === 6) {
      const id = `${parts[2]}/${parts[3]}`;
      const rs = state.get(id);
      if (!rs) return error(res, log, 404, "RepoNotFound", `Repository not found: ${id}`);
      if (!authorized(req, rs))
        return error(
          res,
          log,
          401,
          "GatedRepo",
          `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        );
      const sha = rs.branches.get(parts[5]) ?? (rs.commits.has(parts[5]) ? parts[5] : undefined);
      if (!sha) return error(res, log, 404, "RevisionNotFound", `Invalid rev id: ${parts[5]}`);
      const siblings = [...rs.commits.get(sha)!.values()].map((e) => ({
        rfilename: e.name,
        size: e.size,
        blobId: e.lfs ? crypto.createHash("sha1").update(`pointer ${e.sha256}`).digest("hex") : e.blobId,
        ...(e.lfs ? { lfs: { sha256: e.sha256, size: e.size, pointerSize: 134 } } : {}),
      }));
      log.status = 200;
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ _id: id, id, modelId: id, sha, private: false, gated: rs.token ? "manual" : false, siblings }));
    }

    if (parts[2] === "resolve" && parts.length >= 5) {
      const id = `${parts[0]}/${parts[1]}`;
      const rs = state.get(id);
      if (!rs) return error(res, log, 404, "RepoNotFound", `Repository not found: ${id}`);
      if (!authorized(req, rs)) return error(res, log, 401, "GatedRepo", `Access to model ${id} is restricted.`);
      const sha = rs.branches.get(parts[3]) ?? (rs.commits.has(parts[3]) ? parts[3] : undefined);
      if (!sha) return error(res, log, 404, "RevisionNotFound", `Invalid rev id: ${parts[3]}`);
      const name = parts.slice(4).join("/");
      const e = rs.commits.get(sha)!.get(name);
      if (!e) return error(res, log, 404, "EntryNotFound", `${name} does not exist on "${parts[3]}"`);
      const headers: Record<string, string> = { "x-repo-commit": sha, etag: `"${e.lfs ? e.sha256 : e.blobId}"` };
      if (e.lfs) Object.assign(headers, { "x-linked-etag": `"${e.sha256}"`, "x-linked-size": String(e.size) });
      if (e.lfs && redirectLfs) {
        log.status = 302;
        res.writeHead(302, { ...headers, location: `${cdnUrl}/cdn/${e.sha256}?name=${encodeURIComponent(name)}&sig=${crypto.randomBytes(4).toString("hex")}` });
        return void res.end();
      }
      return sendFile(req, res, log, e, headers);
    }
    return error(res, log, 404, "NotFound", "unknown route");
  };

  const listen = async (origin: "hub" | "cdn") => {
    const server = http.createServer((req, res) => {
      handle(origin, req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  };

  const hub = await listen("hub");
  const cdn = o.cdnSameOrigin ? hub : await listen("cdn");
  const cdnUrl = cdn.url;

  return {
    url: hub.url,
    cdnUrl,
    requests,
    faults,
    commit,
    commitOf: (id, branch = "main") => {
      const sha = state.get(id)?.branches.get(branch);
      if (!sha) throw new Error(`fake hub: no ${id}@${branch}`);
      return sha;
    },
    bytesServed: (file) => requests.reduce((a, r) => a + (r.file === file ? r.bytes : 0), 0),
    fileRequests: (file) => requests.filter((r) => r.file === file && r.status !== 302),
    close: async () => {
      for (const s of new Set([hub.server, cdn.server])) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}
