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
// When events never reached the page (it lagged, the listener restarted, the socket
// reconnected), the client reports a gap: the page reloads its recent messages from
// /messages/ and merges them in, so it shows everything again, and says so in a notice.
"use strict";

(function () {
  const body = document.body;
  const channel = body.dataset.channel || null;
  const showRoom = body.dataset.page === "all-rooms";
  const list = document.getElementById("messages");
  const notice = document.getElementById("sync-notice");
  const seen = new Set();

  // -- rendering ---------------------------------------------------------------------------

  function setState(id, state, text) {
    const el = document.getElementById(id);
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text || state;
  }

  // One time format everywhere (messages, the status panel): HH:MM:SS, this browser's time.
  function timeOf(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const two = (n) => String(n).padStart(2, "0");
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  // A message's identity: its database id, else (published from a shell) its event id.
  function keyOf(m) {
    if (m.id !== undefined && m.id !== null) return String(m.id);
    if (m.event_id !== undefined && m.event_id !== null) return "event:" + m.event_id;
    return null;
  }

  // Messages stay in id order, so those reloaded after a gap land where they belong.
  function insertInOrder(li, m) {
    const id = typeof m.id === "number" ? m.id : NaN;
    if (!isNaN(id)) {
      for (const other of list.children) {
        const otherId = Number(other.dataset.messageId);
        if (!isNaN(otherId) && otherId > id) {
          list.insertBefore(li, other);
          return;
        }
      }
    }
    list.append(li);
  }

  function renderMessage(m, live) {
    if (!list) return;
    // Anything else than a chat message (published from a shell, say) is shown as JSON.
    if (!m || typeof m !== "object") m = { text: JSON.stringify(m) };
    const key = keyOf(m);
    if (key !== null && seen.has(key)) return;
    if (key !== null) seen.add(key);
    const li = document.createElement("li");
    li.className = live ? "message live" : "message";
    if (key !== null) li.dataset.messageId = key;
    if (m.room) li.dataset.room = m.room;
    if (showRoom && m.room) {
      const tag = document.createElement("a");
      tag.className = "room-tag";
      tag.href = "/rooms/" + encodeURIComponent(m.room) + "/";
      tag.textContent = m.room;
      li.append(tag, " ");
    }
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = typeof m.author === "string" ? m.author : "?";
    const text = document.createElement("span");
    text.className = "text";
    // textContent: user text is never parsed as HTML.
    text.textContent = typeof m.text === "string" ? m.text : JSON.stringify(m);
    const at = m.created_at || new Date().toISOString();
    const time = document.createElement("time");
    time.dateTime = at;
    time.textContent = timeOf(at);
    li.append(author, " ", text, " ", time);
    insertInOrder(li, m);
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

  // Messages already on the page (server-rendered) are not rendered twice when they arrive,
  // and show their time as live ones do.
  document.querySelectorAll("[data-message-id]").forEach(function (el) {
    seen.add(el.dataset.messageId);
  });
  document.querySelectorAll("#messages time[datetime]").forEach(function (el) {
    el.textContent = timeOf(el.getAttribute("datetime"));
  });

  // -- re-sync after a gap -----------------------------------------------------------------

  const GAP_REASONS = {
    lagging: "This page fell behind and missed",
    listener_restart: "The server's listener restarted; this page may have missed",
    reconnect: "The connection dropped; this page may have missed",
  };
  let reloading = null; // the reload under way (a Promise)
  let reloadAgain = false; // a gap arrived during it: fetch once more before it settles

  function describeGap(gap) {
    const what = GAP_REASONS[gap.reason] || "This page missed";
    if (gap.from !== null && gap.to !== null) {
      const count = gap.to - gap.from + 1;
      return what + " " + (count === 1
        ? "1 event (#" + gap.from + ")."
        : count + " events (#" + gap.from + " to #" + gap.to + ").");
    }
    return what + " events.";
  }

  function showNotice(state, text, gap) {
    if (!notice) return;
    notice.hidden = false;
    notice.dataset.state = state;
    if (gap) {
      notice.dataset.reason = gap.reason;
      notice.dataset.from = gap.from === null ? "" : String(gap.from);
      notice.dataset.to = gap.to === null ? "" : String(gap.to);
    }
    notice.textContent = text;
  }

  // Fetch the recent messages and merge them in (renderMessage skips those shown already).
  function reloadMessages() {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = (async function () {
      do {
        reloadAgain = false;
        const response = await fetch(body.dataset.messagesUrl, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error("the server answered " + response.status);
        const data = await response.json();
        (data.messages || []).forEach((m) => renderMessage(m, true));
      } while (reloadAgain);
    })().finally(function () {
      reloading = null;
    });
    return reloading;
  }

  function onGap(gap) {
    const said = describeGap(gap);
    const at = timeOf(new Date().toISOString());
    showNotice("syncing", said + " Reloading the recent messages…", gap);
    if (!body.dataset.messagesUrl) return;
    reloadMessages().then(
      () => showNotice("synced", said + " Reloaded the recent messages at " + at + ".", gap),
      (err) => {
        console.warn("chat: reloading the messages failed", err);
        showNotice("failed", said + " Reloading failed (" + err.message + "): reload the page.", gap);
      },
    );
  }

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
      onGap: onGap,
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
