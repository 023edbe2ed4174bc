// The demo visitor page: registers showMessage and showTerms.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  let visitorid = params.get("visitorid") || sessionStorage.getItem("demo-visitorid");
  if (!visitorid) {
    visitorid = "demo-" + Math.random().toString(36).slice(2, 8);
  }
  sessionStorage.setItem("demo-visitorid", visitorid);
  document.getElementById("visitorid").textContent = visitorid;
  const status = document.getElementById("status");

  const visitor = new PresenceVisitor({ server: location.origin, groupid: 72, visitorid, badge: true });
  visitor.register("showMessage", (args) => {
    const item = document.createElement("li");
    // Agent-supplied text is rendered as text, never as HTML.
    item.textContent = String(args && typeof args === "object" ? args.text : args);
    document.getElementById("messages").appendChild(item);
    return "shown";
  });
  visitor.register("showTerms", () => new Promise((resolve) => {
    const dialog = document.getElementById("terms");
    const done = (answer) => { dialog.close(); resolve(answer); };
    document.getElementById("accept").onclick = () => done("accepted");
    document.getElementById("decline").onclick = () => done("declined");
    dialog.showModal();
  }));
  visitor.onclose = () => { status.textContent = "reconnecting…"; };
  visitor.onerror = (e) => { status.textContent = "error: " + e.code; };
  visitor.onready = () => { status.textContent = "online"; };
  document.getElementById("session-key").addEventListener("click", async () => {
    try {
      document.getElementById("key").textContent = await visitor.requestSessionKey();
    } catch (e) {
      document.getElementById("key").textContent = e.message;
    }
  });
  window.presenceVisitor = visitor;
  visitor.connect();
})();
