// A controller that speaks the SDK delivery protocol (docs/sdk-protocol.md)
// over real HTTP on loopback, with switches for the faults the client must
// survive: a failing stream, a silent stream, a stopped server.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export const TOKEN = "sdk-token";

export class TestController {
  revision = 0;
  readonly flags = new Map<string, Record<string, unknown>>();
  /** requests seen, as "METHOD path If-None-Match" */
  readonly requests: string[] = [];
  /** answer the stream with this status instead of events */
  streamStatus = 200;
  /** stop sending pings on open streams */
  silent = false;
  /** pings written to open streams, every 50 ms while not silent */
  pings = 0;
  /** events broadcast since hold(), written by release() */
  private held: string[] | null = null;
  /** refuse every connection, as an unreachable controller would */
  private down = false;
  private streams = new Set<ServerResponse>();
  private sockets = new Set<Socket>();
  private server: Server;
  port = 0;

  constructor() {
    this.server = this.newServer();
  }

  private newServer(): Server {
    const s = createServer((req, res) => this.handle(req, res));
    s.on("connection", (sock) => {
      if (this.down) {
        sock.destroy();
        return;
      }
      this.sockets.add(sock);
      sock.on("close", () => this.sockets.delete(sock));
    });
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Stops listening and cuts every connection: the controller is unreachable. */
  async stop(): Promise<void> {
    for (const r of this.streams) r.destroy();
    this.streams.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server = this.newServer();
  }

  /**
   * Makes the controller unreachable: every connection is cut and new ones
   * are reset. The port stays bound, so that comeBack cannot lose it to
   * another process.
   */
  goDown(): void {
    this.down = true;
    for (const r of this.streams) r.destroy();
    this.streams.clear();
    for (const s of this.sockets) s.destroy();
  }

  /** Accepts connections again after goDown. */
  comeBack(): void {
    this.down = false;
  }

  /** Ends the open streams with an end event, as the controller does at a stream's maximum age. */
  endStreams(reason: string): void {
    for (const r of this.streams) r.end(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
    this.streams.clear();
  }

  /** Cuts the open streams, as a proxy timeout would. */
  dropStreams(): void {
    for (const r of this.streams) r.destroy();
    this.streams.clear();
  }

  get openStreams(): number {
    return this.streams.size;
  }

  snapshot(): { revision: number; flags: unknown[] } {
    return { revision: this.revision, flags: [...this.flags.values()] };
  }

  put(flag: Record<string, unknown>): void {
    this.revision++;
    const f = { ...flag, version: this.revision };
    this.flags.set(String(flag.key), f);
    this.broadcast("put", f);
  }

  delete(key: string): void {
    this.revision++;
    this.flags.delete(key);
    this.broadcast("delete", { key, version: this.revision });
  }

  /** Sends an event to every open stream, as the controller does on a change. */
  broadcast(event: string, data: unknown, id = this.revision): void {
    const text = `event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
    if (this.held !== null) this.held.push(text);
    else for (const r of this.streams) r.write(text);
  }

  /**
   * Holds the events broadcast from now on until release(), as the
   * controller gathers the changes of one store read.
   */
  hold(): void {
    this.held ??= [];
  }

  /**
   * Writes the held events to every open stream in one write, as the
   * controller does, or cut into pieces writes of even length (so mostly
   * in the middle of an event), each handed to the socket before the next.
   */
  async release(pieces = 1): Promise<void> {
    const text = (this.held ?? []).join("");
    this.held = null;
    const size = Math.ceil(text.length / pieces);
    for (let i = 0; i < text.length; i += size) {
      const part = text.slice(i, i + size);
      await Promise.all([...this.streams].map((r) => new Promise<void>((done) => r.write(part, () => done()))));
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(`${req.method} ${req.url} ${req.headers["if-none-match"] ?? ""}`);
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "Content-Type": "application/json" }).end(JSON.stringify({ error: "missing or bad token" }));
      return;
    }
    const etag = `"${this.revision}"`;
    if (req.url === "/sdk/v1/snapshot") {
      if (req.headers["if-none-match"] === etag) {
        res.writeHead(304, { ETag: etag }).end();
        return;
      }
      res.writeHead(200, { "Content-Type": "application/json", ETag: etag }).end(JSON.stringify(this.snapshot()));
      return;
    }
    if (req.url === "/sdk/v1/stream") {
      if (this.streamStatus !== 200) {
        res.writeHead(this.streamStatus, { "Content-Type": "application/json" }).end(JSON.stringify({ error: "stream unavailable" }));
        return;
      }
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write(`: hello\n\nevent: snapshot\nid: ${this.revision}\ndata: ${JSON.stringify(this.snapshot())}\n\n`);
      this.streams.add(res);
      const ping = setInterval(() => {
        if (this.silent) return;
        res.write(": ping\n\n");
        this.pings++;
      }, 50);
      res.on("close", () => {
        clearInterval(ping);
        this.streams.delete(res);
      });
      return;
    }
    res.writeHead(404).end();
  }
}

/** Polls cond until it holds or the deadline passes. */
export async function eventually(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const quiet = { warn: () => {}, error: () => {} };

export const rolloutFlag = (key: string, percent: number, extra: Record<string, unknown> = {}) => ({
  key,
  variants: { off: false, on: true },
  control: "off",
  treatment: "on",
  enabled: true,
  rollout: { percent },
  ...extra,
});
