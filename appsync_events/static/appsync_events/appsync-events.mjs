// appsync-events.mjs: the browser client as an ES module (the API is documented in
// appsync-events.js, next to this file, and in docs/browser.md).
//
//     import { connect, connectDirect } from "/static/appsync_events/appsync-events.mjs";
//     const client = connect("/ws/appsync/");          // relay mode
//     const direct = connectDirect("/appsync/token/"); // direct mode
//
// It runs appsync-events.js (which also defines the global AppSyncEvents) and re-exports
// it, so the two files can never disagree.
import "./appsync-events.js";

const AppSyncEvents = globalThis.AppSyncEvents;

export default AppSyncEvents;
export const {
  VERSION,
  DEFAULT_URL,
  DEFAULT_TOKEN_URL,
  connect,
  connectDirect,
  Client,
  DirectClient,
  AppSyncEventsError,
  backoffDelay,
  headerSubprotocol,
  normalizeChannel,
  resolveUrl,
} = AppSyncEvents;
