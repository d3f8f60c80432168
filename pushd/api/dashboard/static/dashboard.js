// pushd dashboard: keeps the server-rendered pages current from the SSE feeds.
// Data from jobs and nodes only ever reaches the page through textContent (never as markup).
"use strict";

(function () {
  var JOB_EVENTS = ["start", "quorum_vote", "quorum_succeeded", "quorum_failed", "run_start",
    "run_complete", "job_complete", "rehab", "summary", "message"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function countsText(counts) {
    var parts = [];
    Object.keys(counts || {}).sort().forEach(function (name) {
      parts.push(name + " " + counts[name]);
    });
    return parts.length ? parts.join(", ") : "-";
  }

  function setLive(text) {
    var live = document.getElementById("live");
    if (live) { live.textContent = text; }
  }

  function fetchJob(id) {
    return fetch("/dashboard/api/jobs/" + encodeURIComponent(id), {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (resp) {
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      return resp.json();
    });
  }

  // -- jobs list ------------------------------------------------------------------------------

  function jobRow(job) {
    var tr = el("tr");
    tr.setAttribute("data-job", job.id);
    tr.setAttribute("data-active", job.active ? "1" : "0");
    var idCell = el("td", "id");
    var link = el("a", null, job.id);
    link.href = "/dashboard/jobs/" + encodeURIComponent(job.id);
    idCell.appendChild(link);
    tr.appendChild(idCell);
    tr.appendChild(el("td", "command", job.command));
    tr.appendChild(el("td", "requester", job.requester));
    tr.appendChild(el("td", "status status-" + job.status, job.status));
    tr.appendChild(el("td", "counts", countsText(job.counts)));
    tr.appendChild(el("td", "age", job.age));
    tr.appendChild(el("td", "duration", job.duration));
    return tr;
  }

  function findRow(tbody, id) {
    var rows = tbody.querySelectorAll("tr[data-job]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-job") === id) { return rows[i]; }
    }
    return null;
  }

  function upsertJob(tbody, filter, job) {
    var existing = findRow(tbody, job.id);
    var fresh = jobRow(job);
    if (filter && job.status !== filter) {
      if (existing) { existing.remove(); }
      return;
    }
    if (existing) {
      tbody.replaceChild(fresh, existing);
    } else {
      tbody.insertBefore(fresh, tbody.firstChild);
    }
  }

  function jobsPage() {
    var tbody = document.querySelector("#jobs tbody");
    var filter = document.body.getAttribute("data-status") || "";
    var select = document.getElementById("status-filter");
    if (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    }
    function refresh(id) {
      fetchJob(id).then(function (job) { upsertJob(tbody, filter, job); }, function () {});
    }
    var source = new EventSource("/dashboard/feed");
    source.addEventListener("open", function () { setLive("Live: updating as jobs start and finish."); });
    source.addEventListener("error", function () { setLive("Live updates interrupted; reconnecting..."); });
    ["start", "job_complete"].forEach(function (name) {
      source.addEventListener(name, function (event) {
        var data = JSON.parse(event.data);
        if (data.job) { refresh(data.job); }
      });
    });
    // Node counts of running jobs change between org events: refresh the active rows.
    window.setInterval(function () {
      tbody.querySelectorAll("tr[data-active='1']").forEach(function (row) {
        refresh(row.getAttribute("data-job"));
      });
    }, 2000);
  }

  // -- job page -------------------------------------------------------------------------------

  function renderJob(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    document.getElementById("job-counts").textContent = countsText(job.counts);
    document.getElementById("job-age").textContent = job.age;
    document.getElementById("job-duration").textContent = job.duration;
    var tbody = document.querySelector("#nodes tbody");
    var rows = document.createDocumentFragment();
    job.nodes.forEach(function (node) {
      var tr = el("tr");
      tr.setAttribute("data-node", node.name);
      tr.appendChild(el("td", "node", node.name));
      tr.appendChild(el("td", "status status-" + node.status, node.status));
      tr.appendChild(el("td", "reason", node.reason));
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    var outputs = document.getElementById("outputs");
    var names = Object.keys(job.outputs || {});
    if (names.length) {
      var sections = document.createDocumentFragment();
      names.forEach(function (name) {
        var record = job.outputs[name];
        var section = el("section", "output");
        section.setAttribute("data-node", name);
        section.appendChild(el("h4", null, name));
        ["stdout", "stderr"].forEach(function (channel) {
          if (record[channel] !== null && record[channel] !== undefined) {
            section.appendChild(el("h5", null, channel));
            section.appendChild(el("pre", channel, record[channel]));
          }
        });
        sections.appendChild(section);
      });
      outputs.replaceChildren(sections);
    }
    var abort = document.getElementById("abort");
    if (abort && !job.active) { abort.remove(); }
  }

  function jobPage() {
    var id = document.body.getAttribute("data-job");
    var pending = false;
    function refresh() {
      if (pending) { return; }
      pending = true;
      window.setTimeout(function () {
        pending = false;
        fetchJob(id).then(renderJob, function () {});
      }, 100);
    }
    var source = new EventSource("/dashboard/feed/" + encodeURIComponent(id));
    source.addEventListener("open", function () { setLive("Live: updating as nodes report."); });
    JOB_EVENTS.forEach(function (name) {
      source.addEventListener(name, function () {
        refresh();
        if (name === "summary") {
          // The job feed ends after its summary; reconnecting would replay it all again.
          source.close();
          setLive("Finished.");
        }
      });
    });
    source.addEventListener("error", function () { refresh(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    if (!window.EventSource) { return; }
    if (page === "jobs") { jobsPage(); }
    if (page === "job") { jobPage(); }
  });
})();
