/**
 * appsync-events.js: the browser client of django-appsync-events' AppSyncEventsConsumer.
 *
 * Plain ES2017, no dependencies, no build step. Load it as a classic script (it defines one
 * global, `AppSyncEvents`), or import `appsync-events.mjs` next to it as an ES module. In a
 * Django template: `{% include "appsync_events/script.html" %}` or
 * `{% load appsync_events %}{% appsync_events_script %}`. Full guide: docs/browser.md.
 *
 * The browser talks to your Django ASGI server only (never to AppSync, never with AWS
 * credentials); the consumer's JSON protocol is described in docs/channels.md.
 *
 *     const client = AppSyncEvents.connect("/ws/appsync/", {
 *       onStateChange: (state, detail) => console.log("socket", state, detail),
 *       onError: (error) => console.warn(error.code, error.message),
 *     });
 *     const stop = client.subscribe("/chat/rooms/7", (payload) => render(payload), {
 *       onSubscribed: (channel) => console.log("following", channel),
 *       onError: (error) => console.warn("cannot follow", error.code),
 *     });
 *     const result = await client.publish("/chat/rooms/7", { text: "hi" });
 *     stop();          // unsubscribe this handler
 *     client.close();  // for good: no reconnect
 *
 * API
 *
 * AppSyncEvents.connect(url = "/ws/appsync/", options = {}) -> Client
 *   Open the socket now. `url` may be relative (resolved against the page's address) or
 *   absolute; http(s) becomes ws(s), so an https page uses wss. Throws TypeError for a URL
 *   that is not http, https, ws or wss, or for a bad option. Options (all optional):
 *     onStateChange(state, detail)  "connecting" | "open" | "reconnecting" | "closed";
 *                                   detail: {attempt, delay, code, reason} where known.
 *     onError(error)                every error the server reports, except those that
 *                                   reject a publish() Promise (it is the caller's there);
 *                                   also unreadable server messages.
 *     onMessage(message)            every decoded server message, after the client handled
 *                                   it (for custom message types of your own consumer).
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
 *     protocols                     websocket subprotocols, passed to WebSocket.
 *     WebSocket                     the WebSocket constructor (tests, polyfills).
 *
 * client.subscribe(channel, onEvent, {onSubscribed, onError} = {}) -> unsubscribe()
 *   Receive the events of `channel` (a path such as "/chat/rooms/7", or a pattern such as
 *   "/chat/*" when the consumer allows wildcards). onEvent(payload, message) runs for every
 *   event; message.channel is the subscription path (for a wildcard, the pattern). The
 *   subscription lasts until its unsubscribe function is called: it is sent again after every
 *   reconnect. Several handlers of one channel share one server subscription. onSubscribed
 *   (channel) runs whenever the server confirms it (again after a reconnect); onError(error)
 *   when the server refuses it (forbidden, invalid_channel, listener_unavailable...). A
 *   refused subscription stays registered and is asked for again on the next reconnect, or
 *   at once when another handler subscribes to the same channel; unsubscribe to give up.
 *   The returned function returns true the first time it is called, false afterwards.
 *
 * client.publish(channel, payload) -> Promise<PublishResult>
 * client.publishBatch(channel, payloads) -> Promise<PublishResult>
 *   Publish through the consumer (GRANTS must grant PUBLISH, or can_publish allow it).
 *   While connecting, the publish is queued and sent once the socket opens. Resolves with
 *   {channel, successful: [{index, identifier}], failed: [{index, code, message}], queued}
 *   (`queued` is true when the server's durable outbox took the events). Rejects with an
 *   AppSyncEventsError: the server's code (forbidden, invalid_event, publish_failed...), or
 *   "timeout", "queue_full", "closed", "disconnected" (the socket closed before the
 *   answer: the events may or may not have been published; publishes are never resent).
 *
 * client.status(channel) -> "pending" | "subscribed" | "failed" | undefined
 * client.state     the connection state (as given to onStateChange)
 * client.url       the resolved websocket URL
 * client.close()   close the socket, stop reconnecting, reject what is still waiting.
 *
 * AppSyncEvents.AppSyncEventsError   Error subclass with .code, .channel (may be null).
 * AppSyncEvents.backoffDelay(attempt, options, random = Math.random) -> ms
 * AppSyncEvents.normalizeChannel(channel) -> "/a/b" (a leading "/" added, one trailing "/"
 *   dropped; the server validates the rest).
 * AppSyncEvents.resolveUrl(url, base = location.href) -> the websocket URL string.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module !== null && module.exports) module.exports = api;
  if (root) root.AppSyncEvents = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const VERSION = "1";
  const DEFAULT_URL = "/ws/appsync/";
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

  function resolveUrl(url, base) {
    const where = base || (typeof location !== "undefined" ? location.href : undefined);
    let resolved;
    try {
      resolved = new URL(url === undefined || url === null ? DEFAULT_URL : String(url), where);
    } catch (err) {
      throw new TypeError("cannot resolve the websocket URL " + JSON.stringify(url));
    }
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
    for (const name of ["onStateChange", "onError", "onMessage"]) {
      if (o[name] !== null && o[name] !== undefined && typeof o[name] !== "function") {
        throw new TypeError("option " + name + " must be a function");
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

  class Client {
    constructor(url, options) {
      const o = Object.assign({}, DEFAULTS, options || {});
      checkOptions(o);
      this.options = o;
      this.url = resolveUrl(url);
      this.state = "connecting";
      this._WebSocket = o.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
      if (!this._WebSocket) throw new TypeError("no WebSocket here: pass options.WebSocket");
      this._socket = null;
      this._subs = new Map(); // normalised path -> {path, listeners, status, requestId}
      this._pending = new Map(); // request id -> what waits for the answer
      this._queue = []; // publishes waiting for the socket to open
      this._paced = []; // {text, entry} held back by the rate limit, in order
      this._paceTimer = null;
      this._tokens = 0;
      this._refilledAt = 0;
      this._nextId = 0;
      this._attempt = 0;
      this._openedAt = 0;
      this._timer = null;
      this._closed = false;
      this._open();
    }

    // -- connection -------------------------------------------------------------------

    _setState(state, detail) {
      this.state = state;
      safeCall(this.options.onStateChange, state, detail || {});
    }

    _isOpen() {
      return this._socket !== null && this._socket.readyState === OPEN && this.state === "open";
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
        if (socket !== this._socket) return;
        this._openedAt = Date.now();
        // The consumer's limit is per socket and starts full: so does ours.
        this._tokens = this.options.rateLimit;
        this._refilledAt = this._openedAt;
        this._setState("open", { attempt: this._attempt });
        // Subscriptions first (the server forgot them with the old socket), then the
        // publishes queued meanwhile, in the order they were made.
        for (const sub of this._subs.values()) this._sendSubscribe(sub);
        const queued = this._queue.splice(0);
        for (const item of queued) this._sendRequest(item.entry, item.text);
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

    _lost(code, reason) {
      // Publishes the rate limit held back were never sent: they go out on the next
      // socket, as if made while connecting (nothing is ever sent twice).
      const unsent = this._dropPaced().filter((item) => item.entry !== null);
      for (const item of unsent) this._pending.delete(item.entry.id);
      this._queue.unshift(...unsent);
      for (const entry of this._pending.values()) {
        if (entry.kind === "publish") {
          this._settle(entry, null, new AppSyncEventsError(
            "disconnected",
            "the connection closed before the server answered; the events may or may not " +
              "have been published",
            entry.channel,
          ));
        }
      }
      this._pending.clear();
      for (const sub of this._subs.values()) {
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
      for (const item of this._queue.splice(0)) this._settle(item.entry, null, closed());
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

    _send(message, entry) {
      const text = typeof message === "string" ? message : JSON.stringify(message);
      if (this._paced.length === 0 && this._takeToken()) {
        this._socket.send(text);
        return;
      }
      this._paced.push({ text: text, entry: entry || null });
      this._pace();
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
          this._socket.send(this._paced.shift().text);
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
      this._send({ action: "subscribe", channel: sub.path, id: id });
    }

    _sendRequest(entry, text) {
      this._pending.set(entry.id, entry);
      this._send(text, entry);
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
      };
      let sub = this._subs.get(path);
      if (sub === undefined) {
        sub = { path: path, listeners: new Set(), status: "pending", requestId: null };
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
        if (sub.requestId !== null) this._pending.delete(sub.requestId);
        // The server holds it (or is about to): tell it. A refused one it never held.
        if (this._isOpen() && sub.status !== "failed") {
          const id = this._id();
          this._pending.set(id, { kind: "unsubscribe", path: path });
          this._send({ action: "unsubscribe", channel: path, id: id });
        }
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
        const id = this._id();
        let text;
        try {
          text = JSON.stringify({ action: "publish", channel: path, events: payloads, id: id });
        } catch (err) {
          throw new AppSyncEventsError("invalid_event", "an event is not JSON-encodable: " + err.message, path);
        }
        const entry = { kind: "publish", id: id, channel: path, resolve, reject, timer: null, done: false };
        if (this.options.requestTimeout > 0) {
          entry.timer = setTimeout(() => {
            this._pending.delete(id);
            // Not sent yet (connecting, or held back by the rate limit): never send it.
            for (const list of [this._queue, this._paced]) {
              const at = list.findIndex((item) => item.entry === entry);
              if (at !== -1) list.splice(at, 1);
            }
            this._settle(entry, null, new AppSyncEventsError(
              "timeout",
              "no answer within " + this.options.requestTimeout + " ms",
              path,
            ));
          }, this.options.requestTimeout);
        }
        if (this._isOpen()) {
          this._sendRequest(entry, text);
        } else if (this._queue.length >= this.options.maxQueue) {
          this._settle(entry, null, new AppSyncEventsError(
            "queue_full",
            this.options.maxQueue + " publishes already wait for the connection",
            path,
          ));
        } else {
          this._queue.push({ entry: entry, text: text });
        }
      });
    }

    // -- server messages --------------------------------------------------------------

    _take(id) {
      if (id === undefined || id === null) return undefined;
      const entry = this._pending.get(id);
      if (entry !== undefined) this._pending.delete(id);
      return entry;
    }

    _receive(data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (err) {
        this._report(new AppSyncEventsError("bad_message", "the server sent something that is not JSON"));
        return;
      }
      if (message === null || typeof message !== "object") {
        this._report(new AppSyncEventsError("bad_message", "the server sent a JSON value, not an object"));
        return;
      }
      switch (message.type) {
        case "event": {
          const sub = this._subs.get(message.channel);
          if (sub !== undefined) {
            for (const listener of Array.from(sub.listeners)) {
              safeCall(listener.onEvent, message.payload, message);
            }
          }
          break;
        }
        case "subscribed": {
          const entry = this._take(message.id);
          if (entry !== undefined && entry.kind === "subscribe") {
            const sub = entry.sub;
            if (this._subs.get(sub.path) === sub && sub.requestId === message.id) {
              sub.status = "subscribed";
              for (const listener of Array.from(sub.listeners)) safeCall(listener.onSubscribed, sub.path);
            }
          }
          break;
        }
        case "unsubscribed":
          this._take(message.id);
          break;
        case "published": {
          const entry = this._take(message.id);
          if (entry !== undefined && entry.kind === "publish") {
            this._settle(entry, {
              channel: message.channel,
              successful: message.successful || [],
              failed: message.failed || [],
              queued: message.queued === true,
            });
          }
          break;
        }
        case "error":
          this._error(message);
          break;
        default:
          break; // a message of the page's own consumer: onMessage below
      }
      safeCall(this.options.onMessage, message);
    }

    _error(message) {
      const error = new AppSyncEventsError(message.code, message.message, message.channel);
      const entry = this._take(message.id);
      if (entry !== undefined && entry.kind === "publish") {
        this._settle(entry, null, error);
        return;
      }
      if (entry !== undefined && entry.kind === "subscribe") {
        const sub = entry.sub;
        if (this._subs.get(sub.path) === sub && sub.requestId === message.id) {
          sub.status = "failed";
          sub.requestId = null;
          for (const listener of Array.from(sub.listeners)) safeCall(listener.onError, error);
        }
      } else if (entry !== undefined && entry.kind === "unsubscribe" && error.code === "not_subscribed") {
        return; // it was refused or timed out meanwhile: nothing left to undo
      }
      this._report(error);
    }
  }

  function connect(url, options) {
    return new Client(url, options);
  }

  return Object.freeze({
    VERSION: VERSION,
    DEFAULT_URL: DEFAULT_URL,
    connect: connect,
    Client: Client,
    AppSyncEventsError: AppSyncEventsError,
    backoffDelay: backoffDelay,
    normalizeChannel: normalizeChannel,
    resolveUrl: resolveUrl,
  });
});
