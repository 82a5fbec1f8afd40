// Middleware that makes every HTTP request a scope: the tracked flags a
// request evaluates count it, with its duration and a 5xx status as
// error.type, in the cohort metrics.

import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Client } from "./client.js";

/**
 * Express (or Connect) middleware: `app.use(vigilMiddleware(client))`
 * before the routes that evaluate flags.
 */
export function vigilMiddleware(client: Client): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  return (_req, res, next) => {
    const scope = client.newScope();
    // "close" follows "finish" on a completed response and comes alone
    // when the client went away; the scope records only once.
    const done = () => scope.endStatus(res.statusCode);
    res.once("finish", done);
    res.once("close", done);
    client.runInScope(scope, () => next());
  };
}

/**
 * Wraps a handler for Node's http server:
 * `http.createServer(withVigil(client, handler))`.
 */
export function withVigil(
  client: Client,
  handler: RequestListener<typeof IncomingMessage, typeof ServerResponse>,
): RequestListener<typeof IncomingMessage, typeof ServerResponse> {
  const mw = vigilMiddleware(client);
  return (req, res) =>
    mw(req, res, () => {
      Promise.resolve()
        .then(() => handler(req, res))
        .catch((err: unknown) => {
          client.reportError(err);
          if (!res.headersSent) res.statusCode = 500;
          res.end();
        });
    });
}
