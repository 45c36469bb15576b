/**
 * appsync-events.js: the browser client of django-appsync-events.
 *
 * Plain ES2017, no dependencies, no build step. Load it as a classic script (it defines one
 * global, `AppSyncEvents`), or import `appsync-events.mjs` next to it as an ES module. In a
 * Django template: `{% include "appsync_events/script.html" %}` or
 * `{% load appsync_events %}{% appsync_events_script %}`. Full guide: docs/browser.md.
 *
 * Two modes, one API (the same methods and callbacks):
 *
 * - relay (`AppSyncEvents.connect`): the browser talks to your Django ASGI server only, never
 *   to AppSync; AppSyncEventsConsumer relays (its JSON protocol is in docs/channels.md).
 * - direct (`AppSyncEvents.connectDirect`): the browser fetches a short-lived token from
 *   Django's token view (appsync_events.urls) and talks to the AppSync real-time endpoint
 *   itself, authorized by the Lambda authorizer that verifies the token (docs/direct.md).
 *   No AWS credential ever reaches the page: only the token, which grants what GRANTS give
 *   the user.
 *
 *     const client = AppSyncEvents.connect("/ws/appsync/", {      // or:
 *     // const client = AppSyncEvents.connectDirect("/appsync/token/", {
 *       onStateChange: (state, detail) => console.log("socket", state, detail),
 *       onError: (error) => console.warn(error.code, error.message),
 *     });
 *     const stop = client.subscribe("/chat/rooms/7", (payload) => render(payload), {
 *       onSubscribed: (channel) => console.log("following", channel),
 *       onError: (error) => console.warn("cannot follow", error.code),
 *       onGap: (gap) => reloadRoom(),  // events were lost: fetch what the page shows
 *     });
 *     const result = await client.publish("/chat/rooms/7", { text: "hi" });
 *     stop();          // unsubscribe this handler
 *     client.close();  // for good: no reconnect
 *
 * API
 *
 * AppSyncEvents.connect(url = "/ws/appsync/", options = {}) -> Client
 *   Open the socket to the consumer now. `url` may be relative (resolved against the page's
 *   address) or absolute; http(s) becomes ws(s), so an https page uses wss. Throws TypeError
 *   for a URL that is not http, https, ws or wss, or for a bad option. Options (all
 *   optional, shared by both modes unless said otherwise):
 *     onStateChange(state, detail)  "connecting" | "open" | "reconnecting" | "closed";
 *                                   detail: {attempt, delay, code, reason} where known.
 *     onError(error)                every error the server reports, except those that
 *                                   reject a publish() Promise (it is the caller's there);
 *                                   also unreadable server messages.
 *     onMessage(message)            every decoded server message, after the client handled
 *                                   it (relay: for custom message types of your own
 *                                   consumer; direct: the AppSync protocol frames).
 *     onGap(gap)                    events of a subscription were lost (see "Gaps" below),
 *                                   after the subscription's own onGap handlers.
 *     reconnect: true               reconnect after the socket closes (until close()).
 *     minDelay: 500, maxDelay: 30000, factor: 2, jitter: 0.5
 *                                   the wait before reconnect attempt n (from 0) is
 *                                   min(maxDelay, minDelay * factor ** n), reduced by a
 *                                   random share of at most `jitter` (0 to 1) of itself.
 *     stableAfter: 5000             a connection that stayed open this many ms resets the
 *                                   backoff to minDelay.
 *     requestTimeout: 30000         ms a publish() waits for its answer (time queued while
 *                                   connecting included); 0 waits forever.
 *     maxQueue: 100                 publishes held while connecting; more are rejected.
 *     rateLimit: 18, ratePeriod: 1000
 *                                   send at most `rateLimit` messages per `ratePeriod` ms
 *                                   (short bursts allowed), holding the rest back in
 *                                   order, so the consumer's own limit (20 per second by
 *                                   default) never drops them; rateLimit 0 sends at once.
 *     protocols                     (relay) websocket subprotocols, passed to WebSocket.
 *     WebSocket                     the WebSocket constructor (tests, polyfills).
 *
 * AppSyncEvents.connectDirect(tokenUrl = "/appsync/token/", options = {}) -> DirectClient
 *   Fetch a token from `tokenUrl` (same-origin cookies sent: the signed-in user's grants),
 *   then open the AppSync real-time socket it names, with the subprotocols
 *   "aws-appsync-event-ws" and "header-<base64url of {Authorization: token, host}>", send
 *   connection_init and wait for connection_ack; the socket is "open" from then on. A
 *   keep-alive watchdog reconnects when no "ka" arrives within the connectionTimeoutMs the
 *   service announced. Every subscribe and publish carries the current token as its
 *   authorization.
 *   Token refresh: the token is fetched again once `refreshAt` of its lifetime has passed,
 *   in the background, and operations from then on carry the new one; the open socket and
 *   its subscriptions are kept (the service authorized them when they were made and does
 *   not ask again). A reconnect, a subscribe or a publish that finds the token expired, or
 *   about to, fetches a new one first. Reconnects subscribe to every channel again, so no
 *   subscription is lost. Extra options:
 *     refreshAt: 0.8                share of a token's lifetime after which it is fetched
 *                                   again (0 < refreshAt < 1).
 *     autoRefresh: true             false: no background refresh, only the on-demand one.
 *     minValidity: 5000             ms of validity a token must have left to be used (at
 *                                   most a fifth of its lifetime); else it is refreshed.
 *     ackTimeout: 15000             ms to wait for connection_ack before trying again.
 *     onToken(info)                 after every token fetch: {expiresAt (ms, this
 *                                   browser's clock), subscribe, publish, realtimeUrl}.
 *     fetch                         the fetch function (tests).
 *   The token endpoint's 401/403 answers (nothing granted) and network failures are
 *   reported to onError with code "not_authenticated", "forbidden" or "token_failed", and
 *   retried with the reconnect backoff.
 *   Service errors map to the relay's codes: UnauthorizedException -> "forbidden",
 *   InvalidInputError -> "invalid_event", LimitExceededError -> "rate_limited",
 *   BadRequestException -> "bad_request"; others keep the service's errorType. The
 *   AppSyncEventsError's `errors` holds the service's own error list.
 *
 * client.subscribe(channel, onEvent, {onSubscribed, onError, onGap} = {}) -> unsubscribe()
 *   Receive the events of `channel` (a path such as "/chat/rooms/7", or a pattern such as
 *   "/chat/*" when granted). onEvent(payload, message) runs for every event;
 *   message.channel is the subscription path (for a wildcard, the pattern). The
 *   subscription lasts until its unsubscribe function is called: it is sent again after every
 *   reconnect. Several handlers of one channel share one server subscription. onSubscribed
 *   (channel) runs whenever the server confirms it (again after a reconnect); onError(error)
 *   when the server refuses it (forbidden, invalid_channel, listener_unavailable...). A
 *   refused subscription stays registered and is asked for again on the next reconnect, or
 *   at once when another handler subscribes to the same channel; unsubscribe to give up.
 *   onGap(gap) when events of the subscription were lost (see "Gaps" below).
 *   The returned function returns true the first time it is called, false afterwards.
 *
 * Gaps: onGap(gap) tells the page that events of a subscription never reached it, so it
 *   can re-sync what it shows (reload it from the server). gap = {channel, reason, from,
 *   to, run}; `channel` is the subscription path, `from` and `to` the first and last
 *   missed sequence numbers (inclusive) when known, else null.
 *     reason "lagging"           (relay) the channel layer dropped events for this socket
 *                                (it fell behind past the layer's capacity); from/to is
 *                                the exact range of the server's per-group numbering.
 *     reason "listener_restart"  (relay) the server's listener restarted: events published
 *                                meanwhile may be lost; from/to counts the new run's
 *                                events missed, or is null. `run` names the new run.
 *     reason "reconnect"         (both modes) the socket closed while the subscription
 *                                was held and it is confirmed again on the new socket:
 *                                events published meanwhile were not received. Runs
 *                                right after onSubscribed, so a reload started there
 *                                misses nothing. from/to and run are null.
 *   In relay mode a gap comes just before the event that revealed it.
 *
 * client.publish(channel, payload) -> Promise<PublishResult>
 * client.publishBatch(channel, payloads) -> Promise<PublishResult>
 *   Publish (GRANTS must grant PUBLISH; relay: or can_publish allow it). While connecting,
 *   the publish is queued and sent once the socket opens. Resolves with
 *   {channel, successful: [{index, identifier}], failed: [{index, code, message}], queued}
 *   (`queued` is true when the server's durable outbox took the events; always false in
 *   direct mode). Rejects with an AppSyncEventsError: the server's code (forbidden,
 *   invalid_event, publish_failed...), or "timeout", "queue_full", "closed",
 *   "disconnected" (the socket closed before the answer: the events may or may not have
 *   been published; publishes are never resent).
 *
 * client.status(channel) -> "pending" | "subscribed" | "failed" | undefined
 * client.state     the connection state (as given to onStateChange)
 * client.url       the resolved websocket URL (direct: the real-time URL, once known)
 * client.close()   close the socket, stop reconnecting, reject what is still waiting.
 * directClient.refreshToken() -> Promise   fetch a new token now (e.g. after signing in);
 *                  later operations and reconnects use it.
 * directClient.tokenUrl                    the resolved token endpoint URL.
 *
 * AppSyncEvents.AppSyncEventsError   Error subclass with .code, .channel (may be null).
 * AppSyncEvents.backoffDelay(attempt, options, random = Math.random) -> ms
 * AppSyncEvents.normalizeChannel(channel) -> "/a/b" (a leading "/" added, one trailing "/"
 *   dropped; the server validates the rest).
 * AppSyncEvents.resolveUrl(url, base = location.href) -> the websocket URL string.
 * AppSyncEvents.headerSubprotocol(headers) -> "header-..." (unpadded base64url of the JSON).
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module !== null && module.exports) module.exports = api;
  if (root) root.AppSyncEvents = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const VERSION = "2";
  const DEFAULT_URL = "/ws/appsync/";
  const DEFAULT_TOKEN_URL = "/appsync/token/";
  const SUBPROTOCOL = "aws-appsync-event-ws";
  const DEFAULTS = Object.freeze({
    reconnect: true,
    minDelay: 500,
    maxDelay: 30000,
    factor: 2,
    jitter: 0.5,
    stableAfter: 5000,
    requestTimeout: 30000,
    maxQueue: 100,
    rateLimit: 18,
    ratePeriod: 1000,
    protocols: undefined,
    WebSocket: undefined,
    onStateChange: null,
    onError: null,
    onMessage: null,
    onGap: null,
  });
  const DIRECT_DEFAULTS = Object.freeze({
    refreshAt: 0.8,
    autoRefresh: true,
    minValidity: 5000,
    ackTimeout: 15000,
    onToken: null,
    fetch: undefined,
  });
  // The service's errorType -> the relay's error code, where they mean the same.
  const SERVICE_CODES = Object.freeze({
    UnauthorizedException: "forbidden",
    InvalidInputError: "invalid_event",
    LimitExceededError: "rate_limited",
    BadRequestException: "bad_request",
  });
  const OPEN = 1; // WebSocket.OPEN, without needing the constructor

  class AppSyncEventsError extends Error {
    constructor(code, message, channel) {
      super(message || code);
      this.name = "AppSyncEventsError";
      this.code = code;
      this.channel = channel === undefined ? null : channel;
    }
  }

  function normalizeChannel(channel) {
    if (typeof channel !== "string") {
      throw new TypeError("a channel must be a string such as '/chat/rooms/7'");
    }
    let text = channel;
    if (text.startsWith("/")) text = text.slice(1);
    if (text.endsWith("/")) text = text.slice(0, -1);
    if (!text) throw new TypeError("a channel must not be empty: write e.g. '/chat/rooms/7'");
    return "/" + text;
  }

  function absoluteUrl(url, fallback, base) {
    const where = base || (typeof location !== "undefined" ? location.href : undefined);
    try {
      return new URL(url === undefined || url === null ? fallback : String(url), where);
    } catch (err) {
      throw new TypeError("cannot resolve the URL " + JSON.stringify(url));
    }
  }

  function resolveUrl(url, base) {
    const resolved = absoluteUrl(url, DEFAULT_URL, base);
    const schemes = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" };
    const scheme = schemes[resolved.protocol];
    if (!scheme) {
      throw new TypeError(
        "the websocket URL must be http(s) or ws(s), not " + JSON.stringify(resolved.protocol),
      );
    }
    resolved.protocol = scheme;
    resolved.hash = "";
    return resolved.href;
  }

  function base64url(text) {
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function headerSubprotocol(headers) {
    return "header-" + base64url(JSON.stringify(headers));
  }

  function backoffDelay(attempt, options, random) {
    const o = Object.assign({}, DEFAULTS, options);
    const draw = random || Math.random;
    const ceiling = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, Math.max(0, attempt)));
    // Spread reconnecting pages over [ceiling * (1 - jitter), ceiling]: after a server
    // restart, every tab does not come back in the same millisecond.
    return Math.round(ceiling * (1 - o.jitter * draw()));
  }

  function checkOptions(o) {
    const numbers = [
      "minDelay", "maxDelay", "factor", "stableAfter", "requestTimeout", "maxQueue", "rateLimit",
    ];
    for (const name of numbers) {
      if (typeof o[name] !== "number" || !(o[name] >= 0) || o[name] === Infinity) {
        throw new TypeError("option " + name + " must be a finite number >= 0, not " + o[name]);
      }
    }
    if (o.factor < 1) throw new TypeError("option factor must be at least 1, not " + o.factor);
    if (o.maxDelay < o.minDelay) {
      throw new TypeError("option maxDelay (" + o.maxDelay + ") is below minDelay (" + o.minDelay + ")");
    }
    if (typeof o.ratePeriod !== "number" || !(o.ratePeriod > 0) || o.ratePeriod === Infinity) {
      throw new TypeError("option ratePeriod must be a finite number > 0, not " + o.ratePeriod);
    }
    if (typeof o.jitter !== "number" || !(o.jitter >= 0 && o.jitter <= 1)) {
      throw new TypeError("option jitter must be a number from 0 to 1, not " + o.jitter);
    }
    for (const name of ["onStateChange", "onError", "onMessage", "onGap", "onToken"]) {
      if (o[name] !== null && o[name] !== undefined && typeof o[name] !== "function") {
        throw new TypeError("option " + name + " must be a function");
      }
    }
  }

  function checkDirectOptions(o) {
    if (typeof o.refreshAt !== "number" || !(o.refreshAt > 0 && o.refreshAt < 1)) {
      throw new TypeError("option refreshAt must be a number between 0 and 1, not " + o.refreshAt);
    }
    for (const name of ["minValidity", "ackTimeout"]) {
      if (typeof o[name] !== "number" || !(o[name] >= 0) || o[name] === Infinity) {
        throw new TypeError("option " + name + " must be a finite number >= 0, not " + o[name]);
      }
    }
  }

  // A handler that throws must not break the client or the other handlers.
  function safeCall(fn, ...args) {
    if (typeof fn !== "function") return;
    try {
      fn(...args);
    } catch (err) {
      console.error("AppSyncEvents: a callback threw", err);
    }
  }

  function asError(err, code) {
    if (err instanceof AppSyncEventsError) return err;
    return new AppSyncEventsError(code, String((err && err.message) || err));
  }

  // What both modes share: the connection life cycle (states, backoff, close), the
  // subscriptions and their listeners, publishes (queue, timeout, answers) and pacing. A
  // mode supplies _open() and _receive(), the frames (_subscribeMessage, _unsubscribe,
  // _publishMessage) and _prepare(), which hands an operation the authorization to send.
  class BaseClient {
    constructor(options, defaults) {
      const o = Object.assign({}, DEFAULTS, defaults || {}, options || {});
      checkOptions(o);
      this.options = o;
      this.url = null;
      this.state = "connecting";
      this._WebSocket = o.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
      if (!this._WebSocket) throw new TypeError("no WebSocket here: pass options.WebSocket");
      this._socket = null;
      this._subs = new Map(); // normalised path -> {path, listeners, status, requestId}
      this._pending = new Map(); // request id -> what waits for the answer
      this._queue = []; // publish entries waiting for the socket to open
      this._paced = []; // {message, entry} held back by the rate limit, in order
      this._paceTimer = null;
      this._tokens = 0;
      this._refilledAt = 0;
      this._nextId = 0;
      this._seq = 0; // the order publishes were made in
      this._attempt = 0;
      this._openedAt = 0;
      this._timer = null;
      this._closed = false;
    }

    // -- connection -------------------------------------------------------------------

    _setState(state, detail) {
      this.state = state;
      safeCall(this.options.onStateChange, state, detail || {});
    }

    _isOpen() {
      return this._socket !== null && this._socket.readyState === OPEN && this.state === "open";
    }

    // The socket is ready for operations: subscriptions first (the server forgot them with
    // the old socket), then the publishes queued meanwhile, in the order they were made.
    _ready() {
      this._openedAt = Date.now();
      // The server's limit is per socket and starts full: so does ours.
      this._tokens = this.options.rateLimit;
      this._refilledAt = this._openedAt;
      this._setState("open", { attempt: this._attempt });
      for (const sub of this._subs.values()) this._sendSubscribe(sub);
      const queued = this._queue.splice(0);
      for (const entry of queued) this._sendRequest(entry);
    }

    _lost(code, reason) {
      // Publishes never written to the socket go out on the next one, as if made while
      // connecting (nothing is ever sent twice); those sent are settled as "disconnected".
      const unsent = this._dropPaced().filter((item) => item.entry !== null).map((item) => item.entry);
      for (const entry of this._pending.values()) {
        if (entry.kind !== "publish") continue;
        if (entry.sent) {
          this._settle(entry, null, new AppSyncEventsError(
            "disconnected",
            "the connection closed before the server answered; the events may or may not " +
              "have been published",
            entry.channel,
          ));
        } else if (!entry.done && !unsent.includes(entry)) {
          unsent.push(entry);
        }
      }
      unsent.sort((a, b) => a.seq - b.seq);
      this._pending.clear();
      this._queue.unshift(...unsent.filter((entry) => !entry.done));
      for (const sub of this._subs.values()) {
        // Held until now: what is published before it is held again never arrives.
        if (sub.status === "subscribed") sub.resync = true;
        sub.status = "pending";
        sub.requestId = null;
      }
      const stayedOpen = this._openedAt !== 0 && Date.now() - this._openedAt >= this.options.stableAfter;
      if (stayedOpen) this._attempt = 0;
      this._openedAt = 0;
      if (this._closed) return;
      if (!this.options.reconnect) {
        this._shutDown({ code: code, reason: reason });
        return;
      }
      const delay = backoffDelay(this._attempt, this.options);
      this._attempt += 1;
      this._setState("reconnecting", { attempt: this._attempt, delay: delay, code: code, reason: reason });
      this._timer = setTimeout(() => this._open(), delay);
    }

    close() {
      if (this._closed) return;
      const socket = this._socket;
      this._socket = null;
      if (socket !== null) {
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try {
          socket.close(1000);
        } catch (err) {
          console.error("AppSyncEvents: closing the socket failed", err);
        }
      }
      this._shutDown({ code: 1000, reason: "closed by the page" });
    }

    _shutDown(detail) {
      this._closed = true;
      this._dropPaced();
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      const closed = () => new AppSyncEventsError("closed", "the client was closed");
      for (const entry of this._queue.splice(0)) this._settle(entry, null, closed());
      for (const entry of this._pending.values()) {
        if (entry.kind === "publish") this._settle(entry, null, closed());
      }
      this._pending.clear();
      this._subs.clear();
      this._setState("closed", detail);
    }

    // -- requests ---------------------------------------------------------------------

    _id() {
      this._nextId += 1;
      return this._nextId;
    }

    // Hand the operation what authorizes it (relay: nothing), now or once it is known.
    _prepare(send, fail) {
      send(null);
    }

    _send(message, entry) {
      const text = JSON.stringify(message);
      if (this._paced.length === 0 && this._takeToken()) {
        this._write(text, entry);
        return;
      }
      this._paced.push({ text: text, entry: entry || null });
      this._pace();
    }

    _write(text, entry) {
      this._socket.send(text);
      if (entry) entry.sent = true;
    }

    _takeToken() {
      const limit = this.options.rateLimit;
      if (!limit) return true;
      const now = Date.now();
      const refill = ((now - this._refilledAt) * limit) / this.options.ratePeriod;
      this._tokens = Math.min(limit, this._tokens + refill);
      this._refilledAt = now;
      if (this._tokens < 1) return false;
      this._tokens -= 1;
      return true;
    }

    // Send held-back messages as tokens come back (one timer at a time).
    _pace() {
      if (this._paceTimer !== null) return;
      const wait = ((1 - this._tokens) * this.options.ratePeriod) / this.options.rateLimit;
      this._paceTimer = setTimeout(() => {
        this._paceTimer = null;
        while (this._paced.length > 0 && this._isOpen() && this._takeToken()) {
          const item = this._paced.shift();
          this._write(item.text, item.entry);
        }
        if (this._paced.length > 0 && this._isOpen()) this._pace();
      }, Math.max(1, Math.ceil(wait)));
    }

    // Held-back messages belong to the socket that closed: subscriptions are sent again
    // on the next one, and publishes waiting for an answer are settled by the caller.
    _dropPaced() {
      const dropped = this._paced;
      this._paced = [];
      if (this._paceTimer !== null) clearTimeout(this._paceTimer);
      this._paceTimer = null;
      return dropped;
    }

    _sendSubscribe(sub) {
      const id = this._id();
      sub.status = "pending";
      sub.requestId = id;
      this._pending.set(id, { kind: "subscribe", sub: sub });
      const current = () => this._subs.get(sub.path) === sub && sub.requestId === id;
      this._prepare(
        (auth) => {
          if (current() && this._isOpen()) this._send(this._subscribeMessage(sub, id, auth));
        },
        (error) => {
          if (current()) this._refused(id, error);
        },
      );
    }

    _sendRequest(entry) {
      this._pending.set(entry.id, entry);
      this._prepare(
        (auth) => {
          if (entry.done || this._pending.get(entry.id) !== entry) return;
          if (this._isOpen()) {
            this._send(this._publishMessage(entry, auth), entry);
          } else {
            // The socket closed while the authorization was on its way: wait for the next.
            this._pending.delete(entry.id);
            this._queue.push(entry);
          }
        },
        (error) => {
          this._pending.delete(entry.id);
          this._settle(entry, null, error);
        },
      );
    }

    _settle(entry, value, error) {
      if (entry.done) return;
      entry.done = true;
      if (entry.timer !== null) clearTimeout(entry.timer);
      if (error) entry.reject(error);
      else entry.resolve(value);
    }

    _report(error) {
      safeCall(this.options.onError, error);
    }

    subscribe(channel, onEvent, options) {
      if (typeof onEvent !== "function") throw new TypeError("subscribe() needs an event handler function");
      const path = normalizeChannel(channel);
      if (this._closed) throw new AppSyncEventsError("closed", "the client was closed", path);
      const listener = {
        onEvent: onEvent,
        onSubscribed: options && options.onSubscribed,
        onError: options && options.onError,
        onGap: options && options.onGap,
      };
      let sub = this._subs.get(path);
      if (sub === undefined) {
        sub = { path: path, listeners: new Set(), status: "pending", requestId: null, resync: false };
        this._subs.set(path, sub);
        sub.listeners.add(listener);
        if (this._isOpen()) this._sendSubscribe(sub);
      } else {
        sub.listeners.add(listener);
        if (sub.status === "subscribed") {
          Promise.resolve().then(() => {
            if (sub.listeners.has(listener)) safeCall(listener.onSubscribed, path);
          });
        } else if (sub.status === "failed" && this._isOpen()) {
          this._sendSubscribe(sub); // a new handler asks again
        }
      }
      let active = true;
      return () => {
        if (!active) return false;
        active = false;
        sub.listeners.delete(listener);
        if (sub.listeners.size > 0 || this._subs.get(path) !== sub) return true;
        this._subs.delete(path);
        const requestId = sub.requestId;
        if (requestId !== null) this._pending.delete(requestId);
        // The server holds it (or is about to): tell it. A refused one it never held.
        if (this._isOpen() && sub.status !== "failed") this._unsubscribe(sub, requestId);
        return true;
      };
    }

    status(channel) {
      const sub = this._subs.get(normalizeChannel(channel));
      return sub === undefined ? undefined : sub.status;
    }

    publish(channel, payload) {
      return this.publishBatch(channel, [payload]);
    }

    publishBatch(channel, payloads) {
      return new Promise((resolve, reject) => {
        if (!Array.isArray(payloads) || payloads.length === 0) {
          throw new TypeError("publishBatch() needs a non-empty array of events");
        }
        const path = normalizeChannel(channel);
        if (this._closed) throw new AppSyncEventsError("closed", "the client was closed", path);
        let events;
        try {
          events = this._encodeEvents(payloads);
        } catch (err) {
          throw new AppSyncEventsError("invalid_event", "an event is not JSON-encodable: " + err.message, path);
        }
        const id = this._id();
        const entry = {
          kind: "publish", id: id, seq: ++this._seq, channel: path, events: events,
          resolve, reject, timer: null, done: false, sent: false,
        };
        if (this.options.requestTimeout > 0) {
          entry.timer = setTimeout(() => {
            if (this._pending.get(id) === entry) this._pending.delete(id);
            // Not sent yet (connecting, or held back by the rate limit): never send it.
            const at = this._queue.indexOf(entry);
            if (at !== -1) this._queue.splice(at, 1);
            const held = this._paced.findIndex((item) => item.entry === entry);
            if (held !== -1) this._paced.splice(held, 1);
            this._settle(entry, null, new AppSyncEventsError(
              "timeout",
              "no answer within " + this.options.requestTimeout + " ms",
              path,
            ));
          }, this.options.requestTimeout);
        }
        if (this._isOpen()) {
          this._sendRequest(entry);
        } else if (this._queue.length >= this.options.maxQueue) {
          this._settle(entry, null, new AppSyncEventsError(
            "queue_full",
            this.options.maxQueue + " publishes already wait for the connection",
            path,
          ));
        } else {
          this._queue.push(entry);
        }
      });
    }

    // -- answers (both modes) ---------------------------------------------------------

    _take(id) {
      if (id === undefined || id === null) return undefined;
      const entry = this._pending.get(id);
      if (entry !== undefined) this._pending.delete(id);
      return entry;
    }

    _subscribed(id) {
      const entry = this._take(id);
      if (entry === undefined || entry.kind !== "subscribe") return;
      const sub = entry.sub;
      if (this._subs.get(sub.path) === sub && sub.requestId === id) {
        sub.status = "subscribed";
        for (const listener of Array.from(sub.listeners)) safeCall(listener.onSubscribed, sub.path);
        if (sub.resync && this._subs.get(sub.path) === sub) {
          sub.resync = false;
          this._gap(sub, { reason: "reconnect", from: null, to: null, run: null });
        }
      }
    }

    // Events of `sub` were lost: its listeners' onGap, then the client's.
    _gap(sub, detail) {
      const gap = Object.assign({ channel: sub.path }, detail);
      for (const listener of Array.from(sub.listeners)) safeCall(listener.onGap, Object.assign({}, gap));
      safeCall(this.options.onGap, gap);
    }

    _published(id, result) {
      const entry = this._take(id);
      if (entry !== undefined && entry.kind === "publish") this._settle(entry, result);
    }

    // An error answer to request `id` (or to none): it rejects a publish, fails a
    // subscription, or goes to onError.
    _refused(id, error) {
      const entry = this._take(id);
      if (entry !== undefined && entry.kind === "publish") {
        this._settle(entry, null, error);
        return;
      }
      if (entry !== undefined && entry.kind === "subscribe") {
        const sub = entry.sub;
        if (this._subs.get(sub.path) === sub && sub.requestId === id) {
          sub.status = "failed";
          sub.requestId = null;
          for (const listener of Array.from(sub.listeners)) safeCall(listener.onError, error);
        }
      } else if (entry !== undefined && entry.kind === "unsubscribe") {
        return; // it was refused or timed out meanwhile: nothing left to undo
      }
      this._report(error);
    }

    _deliver(sub, payload, message) {
      for (const listener of Array.from(sub.listeners)) safeCall(listener.onEvent, payload, message);
    }

    _parse(data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (err) {
        this._report(new AppSyncEventsError("bad_message", "the server sent something that is not JSON"));
        return null;
      }
      if (message === null || typeof message !== "object") {
        this._report(new AppSyncEventsError("bad_message", "the server sent a JSON value, not an object"));
        return null;
      }
      return message;
    }
  }

  // Relay mode: the consumer's JSON protocol over a socket to the Django ASGI server.
  class Client extends BaseClient {
    constructor(url, options) {
      super(options);
      this.url = resolveUrl(url);
      this._open();
    }

    _open() {
      this._timer = null;
      this._setState("connecting", { attempt: this._attempt });
      let socket;
      try {
        socket = new this._WebSocket(this.url, this.options.protocols);
      } catch (err) {
        this._report(new AppSyncEventsError("connect_failed", String(err && err.message)));
        this._lost(0, "the socket could not be created");
        return;
      }
      this._socket = socket;
      socket.onopen = () => {
        if (socket === this._socket) this._ready();
      };
      socket.onmessage = (event) => {
        if (socket === this._socket) this._receive(event.data);
      };
      socket.onclose = (event) => {
        if (socket !== this._socket) return;
        this._socket = null;
        this._lost(event.code, event.reason);
      };
      // An error event carries no detail and is always followed by a close event.
      socket.onerror = () => {};
    }

    _encodeEvents(payloads) {
      JSON.stringify(payloads); // throws for what cannot be sent
      return payloads;
    }

    _subscribeMessage(sub, id) {
      return { action: "subscribe", channel: sub.path, id: id };
    }

    _unsubscribe(sub) {
      const id = this._id();
      this._pending.set(id, { kind: "unsubscribe", path: sub.path });
      this._send({ action: "unsubscribe", channel: sub.path, id: id });
    }

    _publishMessage(entry) {
      return { action: "publish", channel: entry.channel, events: entry.events, id: entry.id };
    }

    _receive(data) {
      const message = this._parse(data);
      if (message === null) return;
      switch (message.type) {
        case "event": {
          const sub = this._subs.get(message.channel);
          if (sub !== undefined) this._deliver(sub, message.payload, message);
          break;
        }
        case "gap": {
          // Events of this subscription were lost before the next one (docs/channels.md).
          const sub = this._subs.get(message.channel);
          const missed = message.missed && typeof message.missed === "object" ? message.missed : null;
          if (sub !== undefined) {
            this._gap(sub, {
              reason: message.reason,
              from: missed && typeof missed.from === "number" ? missed.from : null,
              to: missed && typeof missed.to === "number" ? missed.to : null,
              run: typeof message.run === "string" ? message.run : null,
            });
          }
          break;
        }
        case "subscribed":
          this._subscribed(message.id);
          break;
        case "unsubscribed":
          this._take(message.id);
          break;
        case "published":
          this._published(message.id, {
            channel: message.channel,
            successful: message.successful || [],
            failed: message.failed || [],
            queued: message.queued === true,
          });
          break;
        case "error": {
          const error = new AppSyncEventsError(message.code, message.message, message.channel);
          const entry = this._pending.get(message.id);
          if (entry !== undefined && entry.kind === "unsubscribe" && error.code !== "not_subscribed") {
            this._take(message.id);
            this._report(error);
          } else {
            this._refused(message.id, error);
          }
          break;
        }
        default:
          break; // a message of the page's own consumer: onMessage below
      }
      safeCall(this.options.onMessage, message);
    }
  }

  // Direct mode: the AppSync Events real-time protocol, authorized by a token from Django.
  class DirectClient extends BaseClient {
    constructor(tokenUrl, options) {
      const given = options || {};
      super(given, DIRECT_DEFAULTS);
      checkDirectOptions(this.options);
      this.tokenUrl = absoluteUrl(tokenUrl, DEFAULT_TOKEN_URL).href;
      this._fetch = given.fetch || (typeof fetch !== "undefined" ? fetch.bind(globalThis) : null);
      if (!this._fetch) throw new TypeError("no fetch here: pass options.fetch");
      this._token = null; // {token, host, realtimeUrl, expiresAt, lifetime, subscribe, publish}
      this._tokenPromise = null;
      this._refreshTimer = null;
      this._refreshAttempt = 0;
      this._watchdog = null;
      this._keepAlive = 300000; // ms without a frame before the socket counts as dead
      this._generation = 0;
      this._open();
    }

    // -- the token --------------------------------------------------------------------

    refreshToken() {
      if (this._tokenPromise !== null) return this._tokenPromise;
      const askedAt = Date.now();
      const request = this._fetch(this.tokenUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      }).then(
        (response) => this._readToken(response, askedAt),
        (err) => {
          throw new AppSyncEventsError("token_failed", "the token endpoint cannot be reached: " + (err && err.message));
        },
      );
      this._tokenPromise = request.then(
        (token) => {
          this._tokenPromise = null;
          this._refreshAttempt = 0;
          if (this._closed) return token;
          this._token = token;
          this.url = token.realtimeUrl;
          this._scheduleRefresh();
          safeCall(this.options.onToken, {
            expiresAt: token.expiresAt,
            subscribe: token.subscribe.slice(),
            publish: token.publish.slice(),
            realtimeUrl: token.realtimeUrl,
          });
          return token;
        },
        (err) => {
          this._tokenPromise = null;
          throw err;
        },
      );
      return this._tokenPromise;
    }

    async _readToken(response, askedAt) {
      let body = null;
      try {
        body = await response.json();
      } catch (err) {
        body = null;
      }
      if (!response.ok) {
        const code = (body && typeof body.error === "string" && body.error) || "token_failed";
        const message = (body && body.message) || "the token endpoint answered " + response.status;
        throw new AppSyncEventsError(code, message);
      }
      const fields = ["token", "realtime_url", "http_url"];
      if (!body || fields.some((name) => typeof body[name] !== "string") || typeof body.expires_in !== "number") {
        throw new AppSyncEventsError("token_failed", "the token endpoint's answer lacks token, expires_in, http_url or realtime_url");
      }
      // expires_in is counted from the answer: this browser's clock may differ from the
      // server's, so expires_at is not compared with Date.now().
      const lifetime = Math.max(0, body.expires_in * 1000);
      return {
        token: body.token,
        host: new URL(body.http_url).host,
        realtimeUrl: resolveUrl(body.realtime_url),
        expiresAt: askedAt + lifetime,
        lifetime: lifetime,
        subscribe: Array.isArray(body.subscribe) ? body.subscribe : [],
        publish: Array.isArray(body.publish) ? body.publish : [],
      };
    }

    _margin(token) {
      return Math.min(this.options.minValidity, token.lifetime / 5);
    }

    _usable(token) {
      return token !== null && Date.now() < token.expiresAt - this._margin(token);
    }

    _freshToken() {
      return this._usable(this._token) ? Promise.resolve(this._token) : this.refreshToken();
    }

    _scheduleRefresh() {
      if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
      const token = this._token;
      if (this._closed || !this.options.autoRefresh || token === null) return;
      const due = token.expiresAt - token.lifetime * (1 - this.options.refreshAt);
      this._refreshTimer = setTimeout(() => {
        this._refreshTimer = null;
        this.refreshToken().catch((err) => {
          this._report(asError(err, "token_failed"));
          // Try again with the backoff while the current token lasts; once it is gone,
          // the next operation or reconnect fetches one itself.
          const delay = backoffDelay(this._refreshAttempt, this.options);
          this._refreshAttempt += 1;
          if (!this._closed && Date.now() + delay < token.expiresAt) {
            this._refreshTimer = setTimeout(() => this._scheduleRefresh(), delay);
          }
        });
      }, Math.max(100, due - Date.now()));
    }

    _authorization(token) {
      return { Authorization: token.token, host: token.host };
    }

    _prepare(send, fail) {
      if (this._usable(this._token)) {
        send(this._authorization(this._token));
        return;
      }
      this.refreshToken().then(
        (token) => send(this._authorization(token)),
        (err) => fail(asError(err, "token_failed")),
      );
    }

    // -- the socket -------------------------------------------------------------------

    _open() {
      this._timer = null;
      this._setState("connecting", { attempt: this._attempt });
      const generation = ++this._generation;
      this._freshToken().then(
        (token) => {
          if (!this._closed && generation === this._generation) this._dial(token);
        },
        (err) => {
          if (this._closed || generation !== this._generation) return;
          this._report(asError(err, "token_failed"));
          this._lost(0, "no token: " + (err && err.message));
        },
      );
    }

    _dial(token) {
      let socket;
      try {
        socket = new this._WebSocket(token.realtimeUrl, [
          SUBPROTOCOL,
          headerSubprotocol(this._authorization(token)),
        ]);
      } catch (err) {
        this._report(new AppSyncEventsError("connect_failed", String(err && err.message)));
        this._lost(0, "the socket could not be created");
        return;
      }
      this._socket = socket;
      socket.onopen = () => {
        if (socket !== this._socket) return;
        socket.send(JSON.stringify({ type: "connection_init" }));
        this._watch(this.options.ackTimeout, "no connection_ack");
      };
      socket.onmessage = (event) => {
        if (socket === this._socket) this._receive(event.data);
      };
      socket.onclose = (event) => {
        if (socket !== this._socket) return;
        this._socket = null;
        this._lost(event.code, event.reason);
      };
      socket.onerror = () => {};
    }

    // Close the socket (and so reconnect) unless something arrives within `ms`.
    _watch(ms, reason) {
      if (this._watchdog !== null) clearTimeout(this._watchdog);
      this._watchdog = null;
      if (!(ms > 0)) return;
      const socket = this._socket;
      this._watchdog = setTimeout(() => {
        this._watchdog = null;
        if (socket === null || socket !== this._socket) return;
        this._socket = null;
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try {
          socket.close(4000, reason);
        } catch (err) {
          console.error("AppSyncEvents: closing the socket failed", err);
        }
        this._lost(4000, reason);
      }, ms);
    }

    _lost(code, reason) {
      if (this._watchdog !== null) clearTimeout(this._watchdog);
      this._watchdog = null;
      super._lost(code, reason);
    }

    _shutDown(detail) {
      if (this._watchdog !== null) clearTimeout(this._watchdog);
      if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
      this._watchdog = this._refreshTimer = null;
      this._generation += 1;
      super._shutDown(detail);
    }

    _id() {
      // Operation ids: 1-128 letters, digits, '-', '_' or '+', unique on the connection.
      this._nextId += 1;
      return "op-" + this._nextId.toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    }

    // -- frames -----------------------------------------------------------------------

    _encodeEvents(payloads) {
      return payloads.map((payload) => {
        const text = JSON.stringify(payload);
        if (text === undefined) throw new TypeError("undefined is not JSON");
        return text;
      });
    }

    _subscribeMessage(sub, id, auth) {
      return { type: "subscribe", id: id, channel: sub.path, authorization: auth };
    }

    _unsubscribe(sub, requestId) {
      if (requestId === null) return;
      this._pending.set(requestId, { kind: "unsubscribe", path: sub.path });
      this._send({ type: "unsubscribe", id: requestId });
    }

    _publishMessage(entry, auth) {
      return { type: "publish", id: entry.id, channel: entry.channel, events: entry.events, authorization: auth };
    }

    _serviceError(message, channel) {
      const errors = Array.isArray(message.errors) ? message.errors : [];
      const first = errors[0] || {};
      const type = typeof first.errorType === "string" ? first.errorType : message.type;
      const error = new AppSyncEventsError(SERVICE_CODES[type] || type, first.message || type, channel);
      error.errors = errors;
      return error;
    }

    _receive(data) {
      const message = this._parse(data);
      if (message === null) return;
      if (this._socket !== null && this.state === "open") {
        this._watch(this._keepAlive, "no keep-alive");
      }
      switch (message.type) {
        case "connection_ack":
          this._keepAlive = typeof message.connectionTimeoutMs === "number" ? message.connectionTimeoutMs : 300000;
          this._ready();
          this._watch(this._keepAlive, "no keep-alive");
          break;
        case "ka":
          break;
        case "connection_error": {
          this._report(this._serviceError(message, null));
          // The service refused this token: the next attempt fetches another one.
          this._token = null;
          const socket = this._socket;
          if (socket !== null) socket.close(1000);
          break;
        }
        case "data": {
          const sub = this._subById(message.id);
          if (sub === undefined) break;
          let payload;
          try {
            payload = typeof message.event === "string" ? JSON.parse(message.event) : message.event;
          } catch (err) {
            this._report(new AppSyncEventsError("bad_message", "an event is not JSON", sub.path));
            break;
          }
          this._deliver(sub, payload, { type: "event", channel: sub.path, payload: payload });
          break;
        }
        case "subscribe_success":
          this._subscribed(message.id);
          break;
        case "subscribe_error": {
          const entry = this._pending.get(message.id);
          const channel = entry && entry.sub ? entry.sub.path : null;
          this._refused(message.id, this._serviceError(message, channel));
          break;
        }
        case "unsubscribe_success":
        case "unsubscribe_error":
          this._take(message.id);
          break;
        case "publish_success": {
          const entry = this._pending.get(message.id);
          this._published(message.id, {
            channel: entry ? entry.channel : null,
            successful: (message.successful || []).map((e) => ({ index: e.index, identifier: e.identifier })),
            failed: (message.failed || []).map((e) => ({ index: e.index, code: e.code, message: e.message })),
            queued: false,
          });
          break;
        }
        case "publish_error": {
          const entry = this._pending.get(message.id);
          this._refused(message.id, this._serviceError(message, entry ? entry.channel : null));
          break;
        }
        case "broadcast_error":
        case "error":
          this._refused(message.id, this._serviceError(message, null));
          break;
        default:
          break;
      }
      safeCall(this.options.onMessage, message);
    }

    _subById(id) {
      for (const sub of this._subs.values()) {
        if (sub.requestId === id && sub.status === "subscribed") return sub;
      }
      return undefined;
    }
  }

  function connect(url, options) {
    return new Client(url, options);
  }

  function connectDirect(tokenUrl, options) {
    return new DirectClient(tokenUrl, options);
  }

  return Object.freeze({
    VERSION: VERSION,
    DEFAULT_URL: DEFAULT_URL,
    DEFAULT_TOKEN_URL: DEFAULT_TOKEN_URL,
    connect: connect,
    connectDirect: connectDirect,
    Client: Client,
    DirectClient: DirectClient,
    AppSyncEventsError: AppSyncEventsError,
    backoffDelay: backoffDelay,
    headerSubprotocol: headerSubprotocol,
    normalizeChannel: normalizeChannel,
    resolveUrl: resolveUrl,
  });
});
