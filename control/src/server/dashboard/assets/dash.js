// The dashboard's own script: CSRF header on htmx requests, the fleet event
// stream that refreshes status elements, the search box's suggestions, the
// live log view and the keyboard shortcuts. No framework beyond htmx.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf;
  });

  // ---- confirmation in the page, not a dialog: the first press arms the
  // button (its label asks), the second sends; Escape or a blur disarms ----
  document.addEventListener("htmx:confirm", function (e) {
    var form = e.detail.elt;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (!question) return;
    var button = form.querySelector("button");
    if (form.dataset.armed === "1") {
      form.dataset.armed = "";
      if (button) { button.textContent = button.dataset.label; button.classList.remove("armed"); }
      return;
    }
    e.preventDefault();
    form.dataset.armed = "1";
    if (button) {
      button.dataset.label = button.textContent;
      button.textContent = question + " Press again to confirm";
      button.classList.add("armed");
      button.addEventListener("blur", function disarm() {
        button.removeEventListener("blur", disarm);
        if (form.dataset.armed === "1") {
          form.dataset.armed = "";
          button.textContent = button.dataset.label;
          button.classList.remove("armed");
        }
      });
    }
  });

  // ---- live status: one fleet stream refreshes every [data-watch] ----
  function refresh(el) {
    if (window.htmx && el.dataset.src) {
      htmx.ajax("GET", el.dataset.src, { target: el, swap: "outerHTML" });
    }
  }
  function refreshAll(key) {
    document.querySelectorAll("[data-watch]").forEach(function (el) {
      if (!key || el.dataset.watch === key) refresh(el);
    });
  }
  if (document.querySelector("[data-watch]")) {
    var events = new EventSource("/events");
    var broken = false;
    events.addEventListener("fleet", function (e) {
      var ev = JSON.parse(e.data);
      refreshAll(ev.service + "/" + ev.environment);
    });
    events.addEventListener("resync", function () { refreshAll(null); });
    events.addEventListener("open", function () {
      if (broken) refreshAll(null);
      broken = false;
      document.body.classList.remove("offline");
    });
    events.addEventListener("error", function () {
      broken = true;
      document.body.classList.add("offline");
    });
  }

  // ---- search with suggestions: arrow keys + Enter, Escape closes ----
  var search = document.getElementById("search");
  var list = document.getElementById("suggestions");
  var chosen = -1;
  function items() { return list ? list.querySelectorAll("li") : []; }
  function mark() {
    items().forEach(function (li, i) {
      li.classList.toggle("chosen", i === chosen);
      li.setAttribute("aria-selected", i === chosen ? "true" : "false");
    });
  }
  function lastWord(v) { var parts = v.split(/\s+/); return parts[parts.length - 1]; }
  var asked = 0;
  function suggest() {
    var word = lastWord(search.value);
    var mine = ++asked;
    fetch("/fragments/suggest?q=" + encodeURIComponent(word), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (mine !== asked) return; // a newer keystroke's answer wins
        list.innerHTML = html;
        chosen = -1;
        list.hidden = items().length === 0;
      });
  }
  function pick(li) {
    var value = li.dataset.value;
    var v = search.value.replace(/\S*$/, value);
    search.value = /:$/.test(value) ? v : v + " ";
    list.hidden = true;
    search.focus();
    htmx.trigger(search, "search");
    if (/:$/.test(value)) suggest();
  }
  if (search && list) {
    search.addEventListener("input", suggest);
    search.addEventListener("focus", suggest);
    search.addEventListener("keydown", function (e) {
      var n = items().length;
      if (e.key === "ArrowDown" && n) { chosen = (chosen + 1) % n; mark(); e.preventDefault(); }
      else if (e.key === "ArrowUp" && n) { chosen = (chosen - 1 + n) % n; mark(); e.preventDefault(); }
      else if (e.key === "Enter") {
        if (!list.hidden && chosen >= 0 && chosen < n) { pick(items()[chosen]); e.preventDefault(); }
      } else if (e.key === "Escape") { list.hidden = true; }
    });
    list.addEventListener("mousedown", function (e) {
      var li = e.target.closest("li");
      if (li) { e.preventDefault(); pick(li); }
    });
  }

  // ---- the live log of a mission ----
  var log = document.getElementById("log");
  if (log) {
    var follow = true, paused = false, held = [];
    var filter = document.getElementById("log-filter");
    var followBox = document.getElementById("log-follow");
    var pauseButton = document.getElementById("log-pause");
    var pill = document.getElementById("mission-state");
    function matches(div) {
      var q = filter ? filter.value.toLowerCase() : "";
      return !q || div.textContent.toLowerCase().indexOf(q) >= 0;
    }
    function add(div) {
      div.hidden = !matches(div);
      log.appendChild(div);
      if (follow) log.scrollTop = log.scrollHeight;
    }
    function line(cls, html, seq) {
      var div = document.createElement("div");
      div.className = cls;
      if (seq) div.dataset.seq = seq;
      div.innerHTML = html; // escaped by the server (ansi::to_html)
      if (paused) held.push(div); else add(div);
      if (pauseButton && paused) pauseButton.textContent = "Resume (" + held.length + ")";
    }
    var stream = new EventSource(log.dataset.stream);
    stream.addEventListener("line", function (e) { line("line", e.data, e.lastEventId); });
    stream.addEventListener("gap", function (e) { line("gap", e.data, e.lastEventId); });
    stream.addEventListener("state", function (e) {
      if (pill) { pill.textContent = e.data; pill.className = "pill " + e.data.replace(/ /g, "-"); }
    });
    stream.addEventListener("end", function () { stream.close(); log.classList.add("ended"); });
    stream.addEventListener("error", function () { log.classList.add("reconnecting"); });
    stream.addEventListener("open", function () { log.classList.remove("reconnecting"); });
    if (filter) filter.addEventListener("input", function () {
      log.querySelectorAll("div").forEach(function (d) { d.hidden = !matches(d); });
    });
    if (followBox) followBox.addEventListener("change", function () { follow = followBox.checked; });
    function togglePause() {
      paused = !paused;
      if (!paused) { held.forEach(add); held = []; }
      if (pauseButton) pauseButton.textContent = paused ? "Resume (" + held.length + ")" : "Pause";
    }
    if (pauseButton) pauseButton.addEventListener("click", togglePause);
    document.addEventListener("keydown", function (e) {
      if (e.target.matches("input, textarea")) return;
      if (e.key === "p") togglePause();
      if (e.key === "f" && followBox) { followBox.checked = !followBox.checked; follow = followBox.checked; }
    });
  }

  // ---- keyboard: "/" search, "g s" services, "g a" agents ----
  var g = false;
  document.addEventListener("keydown", function (e) {
    if (e.target.matches("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/" && search) { search.focus(); e.preventDefault(); return; }
    if (g && e.key === "s") location.href = "/";
    if (g && e.key === "a") location.href = "/agents";
    g = e.key === "g";
  });
})();
