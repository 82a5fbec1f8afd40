// A server-sent-events parser as the WHATWG HTML specification defines it:
// lines end in LF, CRLF or CR (a CRLF may be split across chunks), a
// leading byte order mark is skipped, lines starting with ":" are comments,
// and an empty line dispatches the event built so far.

/** One dispatched event. */
export interface SSEEvent {
  /** the event field, or "message" */
  type: string;
  /** the last id seen on the stream */
  id: string;
  data: string;
}

/** Thrown when one event grows beyond the parser's limit. */
export class EventTooLargeError extends Error {
  override name = "EventTooLargeError";
}

/** Parses a stream of text chunks into events. */
export class SSEParser {
  private buf = "";
  private started = false;
  private pendingCR = false;
  private type = "";
  private data: string[] = [];
  private dataLen = 0;
  private hasData = false;
  private lastID = "";

  /** maxEventChars bounds one event (its data), and so the largest snapshot. */
  constructor(private readonly maxEventChars = 64 << 20) {}

  /** Feeds decoded text and returns the events it completed. */
  push(chunk: string): SSEEvent[] {
    if (!this.started && chunk.length > 0) {
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      this.started = true;
    }
    if (this.pendingCR && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.pendingCR = false;
    const out: SSEEvent[] = [];
    let text = this.buf + chunk;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      this.line(text.slice(start, i), out);
      if (c === 0x0d) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 0x0a) i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
    }
    text = text.slice(start);
    if (text.length + this.dataLen > this.maxEventChars) throw new EventTooLargeError(`event larger than ${this.maxEventChars} characters`);
    this.buf = text;
    return out;
  }

  private line(line: string, out: SSEEvent[]): void {
    if (line === "") {
      if (this.hasData) out.push({ type: this.type || "message", id: this.lastID, data: this.data.join("\n") });
      this.type = "";
      this.data = [];
      this.dataLen = 0;
      this.hasData = false;
      return;
    }
    if (line.charCodeAt(0) === 0x3a) return; // comment, such as ": ping"
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.dataLen += value.length + 1;
        if (this.dataLen > this.maxEventChars) throw new EventTooLargeError(`event larger than ${this.maxEventChars} characters`);
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastID = value;
        break;
      // "retry" and unknown fields are ignored: the client's own backoff
      // decides when to reconnect.
    }
  }
}
