// Start the first page's data request while the scripts load (js/api.js takes it over; same URL as the
// page asks for). A file of its own, not an inline script: the Content-Security-Policy allows only
// scripts from this origin.
(function () {
  var h = location.hash, t = null, u = null;
  try { t = sessionStorage.getItem("dynds.token"); } catch (e) { /* storage disabled */ }
  if (/^#\/compare$/.test(h)) u = "/api/v1/leaderboard/tracks";  // then the export: all jobs, or one track's
  else if (/^#\/leaderboard$/.test(h)) u = "/api/v1/leaderboard/tracks";  // then every track's board, or a choice
  else if (!h || /^#\/?(jobs)?$/.test(h)) u = "/api/v1/jobs?limit=50&order=-created_at";
  var headers = { Accept: "application/json" };
  if (t) headers.Authorization = "Bearer " + t;
  if (!u || !window.fetch) return;
  var resp = fetch(u, { headers: headers });
  resp.catch(function () {});  // a failure is reported by the page that takes the request over
  window.__dyndsPrefetch = { url: u, resp: resp };
})();
