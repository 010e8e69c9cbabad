// SuperOffice's own JavaScript client (@superoffice/webapi, pinned in package.json) against a
// SuperOffice simulator: `node superoffice.cjs BASE_URL TICKET APP_TOKEN` prints one JSON line
// per chat session, with the instants the client parsed (tests/it/vendor_clients.rs compares
// them with what the warehouse stores). It asks, as sessionsync does, for UTC with offsets
// (`SO-TimeZone: UTC,includeTZOffset`, which the client writes from these options). CommonJS:
// the package's ES module build does not load in Node.js (extensionless imports).
const webapi = require("@superoffice/webapi");

const [baseUrl, ticket, appToken] = process.argv.slice(2);
if (!baseUrl || !ticket || !appToken) {
  console.error("usage: node superoffice.cjs BASE_URL TICKET APP_TOKEN");
  process.exit(2);
}

const chat = new webapi.ChatAgent({
  baseUrl,
  timezone: "UTC",
  timezoneInclude: true,
  axiosConfig: { headers: { Authorization: `SOTicket ${ticket}`, "SO-AppToken": appToken } },
});

const iso = (d) => {
  if (d === null || d === undefined) return null;
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) {
    throw new Error(`the client did not parse a date: ${d}`);
  }
  return d.toISOString();
};

async function main() {
const sessions = await chat.chatSessionsForUserAsync();
if (!Array.isArray(sessions) || sessions.length === 0) {
  throw new Error("chatSessionsForUserAsync returned no sessions");
}
for (const listed of sessions) {
  const s = await chat.getChatSessionEntityAsync(listed.chatSessionId);
  if (s.chatSessionId !== listed.chatSessionId) {
    throw new Error(`getChatSessionEntityAsync(${listed.chatSessionId}) answered ${s.chatSessionId}`);
  }
  const messages = await chat.getChatMessagesAsync(s.chatSessionId, 0);
  console.log(
    JSON.stringify({
      id: s.chatSessionId,
      status: s.status,
      whenRequested: iso(s.whenRequested),
      whenStarted: iso(s.whenStarted),
      whenEnded: iso(s.whenEnded),
      listedRequested: iso(listed.whenRequested),
      messages: messages.map((m) => ({
        id: m.chatMessageId,
        whenPosted: iso(m.whenPosted),
        readByCustomer: m.readByCustomer,
      })),
    }),
  );
}
}

main().catch((e) => {
  console.error(`the official client failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
