// The demo chat's browser side: plain JavaScript, no build step.
//
// Relay mode (the default): one websocket to the Django app (never to AppSync: the browser
// holds no AWS credentials), opened by the library's browser client (the global
// AppSyncEvents). Over it the page follows its channel (a room, or /chat/rooms/* on the
// "all rooms" page), receives the events the listener forwards, and receives the listener's
// status snapshots.
// Direct mode (DEMO_DIRECT=1): the same client fetches a token from Django's token view and
// connects to AppSync (the emulator) itself; the same callbacks run. The page then has no
// socket to Django, so it polls the listener's status instead.
// Posting a message is a plain form POST (fetch); the message comes back to every page,
// including this one, through AppSync.
"use strict";

(function () {
  const body = document.body;
  const channel = body.dataset.channel || null;
  const showRoom = body.dataset.page === "all-rooms";
  const list = document.getElementById("messages");
  const seen = new Set();

  // -- rendering ---------------------------------------------------------------------------

  function setState(id, state, text) {
    const el = document.getElementById(id);
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text || state;
  }

  function timeOf(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString();
  }

  function renderMessage(m, live) {
    if (!list || !m || m.id === undefined || seen.has(String(m.id))) return;
    seen.add(String(m.id));
    const li = document.createElement("li");
    li.className = live ? "message live" : "message";
    li.dataset.messageId = String(m.id);
    li.dataset.room = m.room;
    if (showRoom) {
      const tag = document.createElement("a");
      tag.className = "room-tag";
      tag.href = "/rooms/" + encodeURIComponent(m.room) + "/";
      tag.textContent = m.room;
      li.append(tag, " ");
    }
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.author;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text; // textContent: user text is never parsed as HTML
    const time = document.createElement("time");
    time.dateTime = m.created_at;
    time.textContent = timeOf(m.created_at);
    li.append(author, " ", text, " ", time);
    list.append(li);
    list.scrollTop = list.scrollHeight;
  }

  function renderStatus(s) {
    setState("status-state", s.state);
    const reason = document.getElementById("status-reason");
    if (reason) {
      const parts = [];
      if (s.reason) parts.push(s.reason);
      if (s.retry_in) parts.push("retry in " + Math.round(s.retry_in) + " s");
      reason.textContent = parts.join(", ");
    }
    const last = document.getElementById("status-last-event");
    if (last) last.textContent = s.last_event_at ? timeOf(s.last_event_at) : "none yet";
    const count = document.getElementById("status-events");
    if (count) count.textContent = String(s.events_received);
    const subs = document.getElementById("status-subscriptions");
    if (subs) {
      subs.replaceChildren(
        ...(s.subscriptions || []).map(function (path) {
          const li = document.createElement("li");
          const code = document.createElement("code");
          code.textContent = path;
          li.append(code);
          return li;
        }),
      );
    }
  }

  // Messages already on the page (server-rendered) are not rendered twice when they arrive.
  document.querySelectorAll("[data-message-id]").forEach(function (el) {
    seen.add(el.dataset.messageId);
  });

  // -- the websocket -----------------------------------------------------------------------

  // The library's browser client (appsync_events/static/appsync_events/appsync-events.js)
  // speaks the consumer's protocol, reconnects with a jittered backoff and follows the
  // channel again after every reconnect; this page only renders what it reports.
  const direct = body.dataset.mode === "direct";
  const callbacks = {
    onStateChange: function (state) {
      setState("page-socket", state);
      if (channel && state !== "open") setState("page-follow", "pending");
    },
    onError: function (error) {
      console.warn("chat: the server said", error.code, error.message);
    },
    // "status" is the demo's own message type: ChatConsumer relays the listener's status.
    onMessage: function (message) {
      if (message.type === "status") renderStatus(message.status);
    },
  };
  const client = direct
    ? AppSyncEvents.connectDirect(body.dataset.tokenUrl, callbacks)
    : AppSyncEvents.connect(body.dataset.wsUrl, callbacks);

  if (channel) {
    // message.channel is the subscription (maybe /chat/rooms/*); the payload carries the
    // concrete room as the channel template's field.
    client.subscribe(channel, (payload) => renderMessage(payload, true), {
      onSubscribed: () => setState("page-follow", "following"),
      onError: (error) => setState("page-follow", "failed", "failed: " + error.message),
    });
  }

  // -- posting -----------------------------------------------------------------------------

  const form = document.getElementById("post-form");
  if (form) {
    const author = form.querySelector("[name=author]");
    const text = form.querySelector("[name=text]");
    const error = document.getElementById("post-error");
    author.value = localStorage.getItem("chat-author") || author.value;
    form.addEventListener("submit", async function (e) {
      e.preventDefault();
      error.textContent = "";
      localStorage.setItem("chat-author", author.value);
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
      });
      const data = await response.json();
      if (!response.ok) {
        const errors = Object.values(data.errors || {}).flat();
        error.textContent = errors.map((x) => x.message).join(" ") || "Could not send.";
        return;
      }
      text.value = "";
      text.focus();
      // The message also comes back through AppSync; de-duplication keeps one copy. It is
      // shown right away so the sender never waits on the round trip.
      renderMessage(data, true);
    });
  }

  // The listener's status, once, before the live updates arrive over the socket; in direct
  // mode, every two seconds (no socket to Django brings the updates).
  function pollStatus() {
    fetch(body.dataset.statusUrl, { headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then(renderStatus)
      .catch((err) => console.warn("chat: status", err));
  }
  pollStatus();
  if (direct) setInterval(pollStatus, 2000);
})();
