// Refreshes the terminal page while its session runs; the page itself shows the session as it
// was when loaded, so without this script a reload shows progress.
(function () {
  var section = document.getElementById("session");
  if (!section || section.dataset.running !== "true") return;
  var id = section.dataset.session;
  function poll() {
    fetch("/terminal/" + encodeURIComponent(id) + "/state", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.status === "running") { setTimeout(poll, 500); } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 500);
})();
