// The Vigil console: a page over the admin API (docs/api.md), with no build
// step. The token lives in sessionStorage and goes out only as a bearer
// token; routes are in the URL's fragment, so no token or key ever reaches
// a server log through a URL.
(function () {
  'use strict';

  var root = document.querySelector('meta[name="vigil-root"]').content;
  var apiBase = root + 'api/v1/';
  var storeKey = 'vigil.console.session';
  var main = document.getElementById('main');
  var nav = document.getElementById('nav');
  var pollEvery = 2000;

  // What the tests and people measuring the console can read.
  var probe = window.vigilConsole = { overviewMs: 0, overviewSinceLoad: 0, overviewRows: 0, renders: 0, blocked: [], errors: [] };
  // Errors nobody handled are bugs of the page; the browser test reads them.
  window.addEventListener('error', function (e) { probe.errors.push(String(e.message)); });
  window.addEventListener('unhandledrejection', function (e) {
    if (!(e.reason instanceof SignedOut)) probe.errors.push(String(e.reason && e.reason.stack || e.reason));
  });
  // Anything the page's Content-Security-Policy blocks is a bug of the page.
  document.addEventListener('securitypolicyviolation', function (e) { probe.blocked.push(e.violatedDirective + ' ' + e.blockedURI); });

  var session = loadSession();
  var page = null; // the current page's stop function

  // ---- utilities ----

  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function words(state) { return String(state || '').replace(/_/g, ' '); }
  function badge(kind, value, label) {
    var v = value || 'none';
    return '<span class="badge ' + kind + '-' + esc(v) + '">' + esc(label || words(v)) + '</span>';
  }
  function num(x, digits) {
    if (x == null || !isFinite(x)) return '–';
    if (x !== 0 && (Math.abs(x) >= 1e5 || Math.abs(x) < 1e-3)) return x.toExponential(2);
    return (+x.toFixed(digits == null ? 3 : digits)).toString();
  }
  function pct(x) { return x == null ? '–' : num(x * 100, 2) + '%'; }
  function count(x) { return x == null ? '–' : Math.round(x).toLocaleString('en'); }
  function dur(ms) {
    if (ms < 0) ms = 0;
    var s = Math.round(ms / 1000);
    if (s < 60) return s + 's';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + (s % 60) + 's';
    var h = Math.floor(m / 60);
    if (h < 48) return h + 'h ' + (m % 60) + 'm';
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  }
  function when(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    return '<time datetime="' + esc(iso) + '">' + esc(d.toLocaleString()) + '</time>';
  }
  function since(iso) { return iso ? '<span data-since="' + esc(iso) + '">' + dur(Date.now() - Date.parse(iso)) + '</span>' : '–'; }
  function until(iso) { return iso ? '<span data-until="' + esc(iso) + '">' + untilText(iso) + '</span>' : '–'; }
  function untilText(iso) {
    var ms = Date.parse(iso) - Date.now();
    return ms <= 0 ? 'due' : 'in ' + dur(ms);
  }
  // tick refreshes the relative times on the page without touching the rest.
  function tick() {
    var now = Date.now();
    main.querySelectorAll('[data-since]').forEach(function (e) { e.textContent = dur(now - Date.parse(e.dataset.since)); });
    main.querySelectorAll('[data-until]').forEach(function (e) { e.textContent = untilText(e.dataset.until); });
  }

  // ---- session ----

  function loadSession() {
    try {
      var s = JSON.parse(sessionStorage.getItem(storeKey) || 'null');
      return s && s.token ? s : null;
    } catch (e) { return null; }
  }
  function saveSession(s) {
    session = s;
    if (s) sessionStorage.setItem(storeKey, JSON.stringify(s));
    else sessionStorage.removeItem(storeKey);
  }
  function isAdmin() { return session && session.role === 'admin'; }

  // SignedOut is thrown by call when the server refuses the token: the
  // page has already been replaced by the signed-out page.
  function SignedOut() {}

  // call sends one API request with the session's token. A 401 means the
  // token was revoked or has expired: the session ends there.
  function call(method, path, opts) {
    opts = opts || {};
    var headers = { Authorization: 'Bearer ' + (opts.token || session.token) };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.etag) headers['If-None-Match'] = opts.etag;
    return fetch(apiBase + path, {
      method: method, headers: headers, cache: 'no-store', credentials: 'omit',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
    }).then(function (res) {
      if (res.status === 401 && !opts.token) {
        saveSession(null);
        location.hash = '#/signed-out';
        throw new SignedOut();
      }
      return res;
    });
  }
  function json(method, path, opts) {
    return call(method, path, opts).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) {
          var e = new Error(body.error || (res.status + ' ' + res.statusText));
          e.status = res.status;
          e.field = body.field;
          throw e;
        }
        return body;
      });
    });
  }
  function failed(e, where) {
    if (e instanceof SignedOut) return;
    if (where) where.innerHTML = '<p class="error" role="alert">' + esc(e.message) + '</p>';
  }

  // ---- routing ----

  var lastPath = null;

  function route() {
    var active = document.activeElement;
    var filterFocus = active && active.closest && active.closest('#filters') ? active.dataset.state : undefined;
    if (page) { page(); page = null; }
    var h = location.hash.replace(/^#/, '') || '/';
    var path = h.split('?')[0];
    var moved = lastPath !== null && path !== lastPath;
    lastPath = path;
    show(path, new URLSearchParams(h.split('?')[1] || ''), filterFocus);
    // On a new page the focus goes to its content, as a page load puts it
    // at the top, so that Tab goes on from there and not from a link that
    // is gone. A filter of the same page keeps it on the filter.
    if (moved && !main.contains(document.activeElement)) main.focus();
  }

  function show(path, query, filterFocus) {
    drawNav();
    if (path === '/signed-out') return signedOut();
    if (!session) return signIn(path === '/signin' ? query.get('msg') : '');
    if (path === '/signin') { location.hash = '#/'; return; }
    var m = path.match(/^\/rollouts\/(.+)$/);
    if (m) return rolloutPage(decodeURIComponent(m[1]));
    m = path.match(/^\/flags\/(.+)$/);
    if (m) return flagPage(decodeURIComponent(m[1]));
    return overviewPage(query.get('state') || '', filterFocus);
  }

  function drawNav() {
    if (!session) { nav.innerHTML = ''; return; }
    nav.innerHTML = '<a href="#/">Rollouts</a>' +
      '<span class="who" id="who">Signed in as <strong>' + esc(session.name) + '</strong> (' + esc(session.role) + ')</span>' +
      '<button type="button" id="signout">Sign out</button>';
    document.getElementById('signout').onclick = function () {
      saveSession(null);
      location.hash = '#/signin?msg=signed-out';
    };
  }

  // ---- sign-in ----

  function signIn(msg) {
    document.title = 'Sign in · Vigil';
    main.innerHTML = '<section class="signin" id="signin"><h1>Sign in</h1>' +
      (msg === 'signed-out' ? '<p role="status">You are signed out. The token was forgotten by this tab.</p>' : '') +
      '<p>Sign in with a Vigil token: a reader token to watch, an admin token to act. The token stays in this tab only and is sent to the controller alone.</p>' +
      '<form id="signin-form"><label for="token">Token</label>' +
      '<input id="token" type="password" autocomplete="off" required spellcheck="false">' +
      '<button type="submit">Sign in</button><div id="signin-error" aria-live="assertive"></div></form></section>';
    var input = document.getElementById('token');
    input.focus();
    document.getElementById('signin-form').onsubmit = function (ev) {
      ev.preventDefault();
      var token = input.value.trim();
      var out = document.getElementById('signin-error');
      call('GET', 'whoami', { token: token }).then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          if (res.status === 401) throw new Error('This token was refused: it was revoked, has expired, or was never issued by this controller.');
          if (res.status === 403) throw new Error('This token may not use the console (' + (body.error || 'forbidden') + '). Use an admin or a reader token.');
          if (!res.ok) throw new Error(body.error || res.statusText);
          saveSession({ token: token, name: body.name, role: body.role });
          location.hash = '#/';
          if (location.hash === '#/') route();
        });
      }).catch(function (e) { out.innerHTML = '<p class="error" role="alert">' + esc(e.message) + '</p>'; });
    };
  }

  function signedOut() {
    document.title = 'Signed out · Vigil';
    main.innerHTML = '<section class="signin" id="signed-out"><h1>Signed out</h1>' +
      '<p role="alert">The controller refused your token: it was revoked, has expired, or the controller no longer knows it. Nothing was changed by the request that was refused.</p>' +
      '<p><a href="#/signin">Sign in again</a> with a valid token.</p></section>';
  }

  // ---- overview ----

  var states = ['pending', 'progressing', 'paused', 'promoted', 'rolled_back', 'aborted'];
  // overviewLimit is how many flags a page of the overview shows: the
  // controller reads that many per poll, however many flags it has.
  var overviewLimit = 100;

  function overviewPage(filter, filterFocus) {
    document.title = 'Rollouts · Vigil';
    var t0 = performance.now();
    var fs = '<button type="button" data-state="" aria-pressed="' + (!filter) + '">all</button>';
    states.forEach(function (s) {
      fs += '<button type="button" data-state="' + s + '" aria-pressed="' + (filter === s) + '">' + words(s) + '</button>';
    });
    main.innerHTML = '<h1>Rollouts</h1>' +
      '<div class="filters" role="group" aria-label="Show flags by state" id="filters">' + fs + '</div>' +
      '<div class="find"><label for="find">Find a flag</label><input id="find" type="search" autocomplete="off" spellcheck="false" placeholder="part of a key or a description"></div>' +
      '<nav class="pager" id="pager" aria-label="Pages of flags" hidden><button type="button" id="prev-page">Previous page</button>' +
      '<span id="page-no" class="meta"></span><button type="button" id="next-page">Next page</button></nav>' +
      '<p class="meta" id="updated" aria-live="polite"></p><div id="overview-error"></div>' +
      '<div class="table-wrap"><table class="flags" id="flags"><caption class="sr-only">Flags with their rollouts, a page at a time</caption><thead><tr>' +
      '<th scope="col">Flag</th><th scope="col">State</th><th scope="col">Percent</th><th scope="col" class="opt">Step</th>' +
      '<th scope="col">Verdict</th><th scope="col" class="opt">Checks</th><th scope="col" class="opt">In step</th><th scope="col" class="opt">Next look</th>' +
      '</tr></thead><tbody id="rows"></tbody></table></div>';
    var etag = '', data = null, stopped = false, first = true;
    // trail holds the continue token of each page from the first to the
    // one shown ('' for the first): Next adds one, Previous drops one.
    var trail = [''];
    // asked counts the requests, so that an answer to a page no longer
    // shown is dropped and only the latest request polls on.
    var asked = 0;
    var timer = setInterval(tick, 1000);
    var poller = null, finding = null;

    var fe = document.getElementById('filters');
    fe.querySelectorAll('button').forEach(function (b) {
      b.onclick = function () { location.hash = b.dataset.state ? '#/?state=' + b.dataset.state : '#/'; };
      if (filterFocus !== undefined && b.dataset.state === filterFocus) b.focus();
    });
    var find = document.getElementById('find');
    // The controller finds: a page holds what matches among all flags.
    find.oninput = function () {
      clearTimeout(finding);
      finding = setTimeout(function () { go(['']); }, 250);
    };
    var prev = document.getElementById('prev-page'), next = document.getElementById('next-page');
    // The buttons stay focusable when there is no page that way, so that
    // the focus is not lost at the last page; they say they are disabled.
    prev.onclick = function () { if (trail.length > 1) go(trail.slice(0, -1)); };
    next.onclick = function () { if (data && data.continue) go(trail.concat([data.continue])); };
    function go(t) {
      trail = t;
      // Until the page comes, Next has no token to follow: a second press
      // must not skip a page.
      data = null;
      etag = '';
      clearTimeout(poller);
      poll();
    }
    function pageQuery() {
      var q = new URLSearchParams({ limit: String(overviewLimit) });
      if (filter) q.set('state', filter);
      var text = find.value.trim();
      if (text) q.set('find', text);
      if (trail[trail.length - 1]) q.set('continue', trail[trail.length - 1]);
      return q.toString();
    }
    function draw() {
      var rows = data.flags, q = find.value.trim();
      var html = [];
      for (var i = 0; i < rows.length; i++) html.push(rowHTML(rows[i]));
      var none = filter || q ? 'No flag ' + (filter ? 'is ' + esc(words(filter)) : 'matches') + (q && filter ? ' and matches' : '') : 'No flags';
      document.getElementById('rows').innerHTML = html.length ? html.join('') :
        '<tr><td colspan="8" class="nodata">' + none + (data.continue ? ' on this page; the next page looks further.' : trail.length > 1 ? ' on this page.' : '.') + '</td></tr>';
      // One page needs no pager.
      document.getElementById('pager').hidden = trail.length < 2 && !data.continue;
      prev.setAttribute('aria-disabled', String(trail.length < 2));
      next.setAttribute('aria-disabled', String(!data.continue));
      document.getElementById('page-no').textContent = 'Page ' + trail.length;
      document.getElementById('updated').textContent = rows.length + (rows.length === 1 ? ' flag' : ' flags') + ' on page ' + trail.length +
        (data.continue ? ', more on the next' : ', the last') + ' · updated ' + new Date().toLocaleTimeString();
      probe.renders++;
      probe.overviewPage = trail.length;
      probe.overviewRows = rows.length;
      if (first) {
        first = false;
        void document.getElementById('flags').offsetHeight; // lay out, so the figure includes it
        probe.overviewMs = performance.now() - t0;
        probe.overviewSinceLoad = performance.now();
      }
    }
    // poll asks for the page shown, and only it, with its ETag.
    function poll() {
      var mine = ++asked, sent = performance.now();
      call('GET', 'console/overview?' + pageQuery(), { etag: etag }).then(function (res) {
        if (stopped || mine !== asked) return;
        if (res.status === 304) return;
        return res.json().then(function (body) {
          if (first) probe.overviewFetchMs = performance.now() - sent;
          if (!res.ok) throw new Error(body.error || res.statusText);
          if (stopped || mine !== asked) return;
          etag = res.headers.get('ETag') || '';
          data = body;
          draw();
          document.getElementById('overview-error').innerHTML = '';
        });
      }).catch(function (e) { if (!stopped && mine === asked) failed(e, document.getElementById('overview-error')); })
        .then(function () { if (!stopped && mine === asked) poller = setTimeout(poll, pollEvery); });
    }
    // redraw renders the table again and lays it out, for measuring.
    probe.redraw = function () {
      if (!data) return 0;
      var t = performance.now();
      draw();
      void document.getElementById('flags').offsetHeight;
      return performance.now() - t;
    };
    poll();
    page = function () { stopped = true; clearInterval(timer); clearTimeout(poller); clearTimeout(finding); probe.redraw = null; };
  }

  function rowHTML(f) {
    var checks = (f.checks || []).map(function (c) {
      return '<span>' + esc(c.check) + ' ' + badge('v', c.outcome) + '</span>';
    });
    if (f.splitMismatch) checks.push('<span>split ' + badge('v', 'fail', 'mismatch') + '</span>');
    var active = f.state === 'progressing' || f.state === 'paused';
    return '<tr data-key="' + esc(f.key) + '" data-state="' + esc(f.state) + '">' +
      '<th scope="row"><a href="#/rollouts/' + encodeURIComponent(f.key) + '">' + esc(f.key) + '</a> <a class="flaglink" href="#/flags/' +
      encodeURIComponent(f.key) + '" aria-label="definition of ' + esc(f.key) + '">definition</a>' +
      (f.description ? '<div class="desc">' + esc(f.description) + '</div>' : '') + '</th>' +
      '<td>' + badge('st', f.state) + (f.pausedReason ? '<div class="desc">' + esc(f.pausedReason) + '</div>' : '') + '</td>' +
      '<td class="num">' + num(f.percent) + '%</td>' +
      '<td class="opt">' + (f.step >= 0 && f.steps ? (f.step + 1) + ' of ' + f.steps : '–') + '</td>' +
      '<td>' + (f.outcome ? badge('v', f.outcome) : '<span class="nodata">no verdict</span>') + '</td>' +
      '<td class="opt"><div class="checks">' + checks.join('') + '</div></td>' +
      '<td class="opt">' + (active ? since(f.stepStartedAt) : '–') + '</td>' +
      '<td class="opt">' + (f.state === 'progressing' ? until(f.nextLookAt) : '–') + '</td></tr>';
  }

  // ---- a rollout ----

  function rolloutPage(key) {
    document.title = key + ' · Vigil';
    var k = encodeURIComponent(key);
    main.innerHTML = '<p><a href="#/">← All rollouts</a> · <a id="flag-link" href="#/flags/' + k + '">The flag: its definition, audit log and evaluation for a unit</a></p>' +
      '<h1 id="title">' + esc(key) + ' <span id="state"></span></h1>' +
      '<div id="rollout-error"></div><p class="lead" id="place"></p>' +
      '<section class="panel" aria-labelledby="verdict-h"><h2 id="verdict-h">Verdict</h2><div id="verdict"></div></section>' +
      '<section class="panel" aria-labelledby="actions-h"><h2 id="actions-h">Actions</h2><div id="actions"></div><div id="action-result" aria-live="assertive"></div></section>' +
      '<section aria-labelledby="checks-h"><h2 id="checks-h">Checks</h2><p class="meta">Charts over the rollout: dashed lines mark step changes. Each chart\'s numbers are also written beside it.</p><div id="checks"></div></section>' +
      '<section class="panel" aria-labelledby="split-h"><h2 id="split-h">Traffic split</h2><div id="split"></div></section>' +
      '<section aria-labelledby="cohorts-h"><h2 id="cohorts-h">Cohorts</h2><div id="cohorts"></div></section>' +
      '<section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2><div id="timeline" class="table-wrap"></div></section>' +
      '<section aria-labelledby="audit-h"><h2 id="audit-h">Audit log</h2><div id="audit" class="table-wrap"></div></section>';
    var stopped = false, poller = null, timer = setInterval(tick, 1000);
    var charts = {}, lastRevision = -1, lastLooks = -1, state = null;

    function poll() {
      Promise.all([json('GET', 'rollouts/' + k), json('GET', 'console/rollouts/' + k + '/looks')]).then(function (r) {
        if (stopped) return;
        state = r[0];
        var looks = r[1].looks, changed = state.revision !== lastRevision;
        if (changed) {
          lastRevision = state.revision;
          drawState(state);
          auditLog(k, document.getElementById('audit'), function () { return stopped; });
        }
        if (looks.length !== lastLooks || changed) {
          lastLooks = looks.length;
          drawChecks(state, looks);
        }
        document.getElementById('rollout-error').innerHTML = '';
      }).catch(function (e) { if (!stopped) failed(e, document.getElementById('rollout-error')); })
        .then(function () { if (!stopped) poller = setTimeout(poll, pollEvery); });
    }

    function drawState(s) {
      document.getElementById('state').innerHTML = badge('st', s.state);
      var steps = (s.plan && s.plan.steps) || [];
      var place = '<strong>' + num(s.percent) + '%</strong> of units get the treatment';
      if (s.step >= 0 && steps.length) place += ' · step ' + (s.step + 1) + ' of ' + steps.length + ' (' + steps.map(function (p) { return num(p) + '%'; }).join(' → ') + ')';
      if (s.startedAt) place += ' · started ' + when(s.startedAt);
      if (s.state === 'progressing' || s.state === 'paused') place += ' · in this step for ' + since(s.stepStartedAt);
      if (s.state === 'progressing' && s.plan && s.plan.interval) place += ' · the judge looks every ' + esc(s.plan.interval);
      if (s.pausedReason) place += '<br>Paused: ' + esc(s.pausedReason);
      if (s.awaitingGate != null) place += '<br>Waiting for a person to approve ' + num(s.awaitingGate) + '% (resume)';
      document.getElementById('place').innerHTML = place;

      var v = s.verdict, vh;
      if (!v) vh = '<p class="nodata" id="sentence">The judge has not looked at this rollout yet.</p>';
      else {
        vh = '<p class="sentence" id="sentence">' + badge('v', v.outcome) + ' ' + esc(v.summary) + '</p>';
        if (v.detail) {
          if (v.detail.explanation && v.detail.explanation !== v.summary) vh += '<p>' + esc(v.detail.explanation) + '</p>';
          vh += '<p class="meta">Combined evidence of the checks: e-value ' + num(v.detail.eValue) + ' of ' + num(v.detail.threshold) +
            ' (the rollout fails when it reaches the threshold) · judged ' + when(v.at) + '</p>';
        }
      }
      document.getElementById('verdict').innerHTML = vh;
      drawActions(s);
      drawSplit(v && v.detail && v.detail.sampleRatio);
      var c = s.cohorts || {}, tot = c.total || {}, st = c.step || {};
      document.getElementById('cohorts').innerHTML = '<table id="cohort-table"><thead><tr><th scope="col">Requests</th><th scope="col" class="num">treatment</th><th scope="col" class="num">control</th></tr></thead><tbody>' +
        '<tr><th scope="row">since the rollout began</th><td class="num">' + count(tot.treatment) + '</td><td class="num">' + count(tot.control) + '</td></tr>' +
        '<tr><th scope="row">in this step</th><td class="num">' + count(st.treatment) + '</td><td class="num">' + count(st.control) + '</td></tr></tbody></table>';
      drawTimeline(s.history || []);
    }

    function drawSplit(sr) {
      var el = document.getElementById('split');
      if (!sr) { el.innerHTML = '<p class="nodata">No split check at this look (it runs while the step is between 0% and 100%).</p>'; return; }
      var counted = sr.requests && (sr.requests.treatment + sr.requests.control) > 0;
      var word = sr.mismatch ? badge('v', 'fail', 'mismatch') : counted ? badge('v', 'pass', 'as expected') : badge('v', 'none', 'not checked yet');
      el.innerHTML = '<p>' + word + ' ' + esc(sr.explanation) + '</p>' +
        '<dl class="figures"><div><dt>expected treatment share</dt><dd>' + pct(sr.expected) + '</dd></div>' +
        '<div><dt>observed share</dt><dd>' + pct(sr.observed) + '</dd></div>' +
        '<div><dt>requests (treatment / control)</dt><dd>' + count(sr.requests && sr.requests.treatment) + ' / ' + count(sr.requests && sr.requests.control) + '</dd></div>' +
        '<div><dt>e-value / threshold</dt><dd>' + num(sr.eValue) + ' / ' + num(sr.threshold) + '</dd></div>' +
        '<div><dt>dispersion</dt><dd>' + num(sr.dispersion) + '</dd></div></dl>';
    }

    function drawTimeline(history) {
      var rows = history.slice().reverse().map(function (t) {
        return '<tr><td>' + when(t.at) + '</td><td>' + badge('st', t.from) + ' → ' + badge('st', t.to) + '</td><td class="num">' + num(t.percent) + '%</td>' +
          '<td class="num">' + (t.step >= 0 ? t.step + 1 : '–') + '</td><td>' + esc(t.actor) + '</td><td>' + esc(t.reason) + '</td></tr>';
      });
      document.getElementById('timeline').innerHTML = rows.length ? '<table id="history"><thead><tr><th scope="col">When</th><th scope="col">Change</th><th scope="col" class="num">Percent</th><th scope="col" class="num">Step</th><th scope="col">Who</th><th scope="col">Why</th></tr></thead><tbody>' + rows.join('') + '</tbody></table>' :
        '<p class="nodata">Never started.</p>';
    }

    function drawActions(s) {
      var el = document.getElementById('actions');
      if (!isAdmin()) {
        el.innerHTML = '<p class="why" id="actions-why">There are no buttons here because you are signed in as ' + esc(session.name) +
          ', a ' + esc(session.role) + ' token: it may see everything and change nothing, and the controller refuses its commands. Sign in with an admin token to pause, resume, promote, roll back, abort or start.</p>';
        return;
      }
      var cmds = {
        pending: ['start'], progressing: ['pause', 'promote', 'rollback', 'abort'], paused: ['resume', 'promote', 'rollback', 'abort'],
        promoted: ['start', 'rollback'], rolled_back: ['start'], aborted: ['start']
      }[s.state] || [];
      var names = { start: 'Start', pause: 'Pause', resume: 'Resume', promote: 'Promote', rollback: 'Roll back', abort: 'Abort' };
      el.innerHTML = '<div class="actions">' + cmds.map(function (c) {
        return '<button type="button" data-command="' + c + '"' + (c === 'rollback' || c === 'abort' ? ' class="danger"' : '') + '>' + names[c] + '</button>';
      }).join('') + '</div>';
      el.querySelectorAll('button').forEach(function (b) { b.onclick = function () { confirmCommand(b.dataset.command, names[b.dataset.command]); }; });
    }

    function confirmCommand(cmd, name) {
      var s = state, p = num(s.percent) + '%';
      var text = {
        start: 'Start a new rollout of ' + key + ' with the plan below: fresh evidence from the first step on. The judge looks at every interval and advances it step by step, holds it, or rolls it back on evidence of harm.',
        pause: 'Hold ' + key + ' at ' + p + '. The judge stops deciding until someone resumes it; units keep their variants.',
        resume: 'Resume ' + key + ' at ' + p + ': the judge looks again and may advance it or roll it back.',
        promote: 'Give the treatment to every unit: ' + key + ' goes to 100% now and the rollout ends as promoted, without waiting for the judge.',
        rollback: 'Send every unit to control: ' + key + ' goes to 0% now and the rollout ends as rolled back.',
        abort: 'Stop the rollout without a judgement: ' + key + ' goes to 0% now and the rollout ends as aborted.'
      }[cmd];
      var dlg = document.getElementById('confirm');
      var form = document.getElementById('confirm-form');
      var errEl = document.getElementById('confirm-error');
      var plan = null;
      document.getElementById('confirm-title').textContent = name + ' ' + key + '?';
      document.getElementById('confirm-text').textContent = text;
      document.getElementById('confirm-ok').textContent = name;
      document.getElementById('confirm-reason').value = '';
      errEl.innerHTML = '';
      dlg.classList.toggle('wide', cmd === 'start');
      var extra = document.getElementById('confirm-extra');
      extra.innerHTML = '';
      if (cmd === 'start') plan = planForm(extra, k, errEl);
      form.onsubmit = function (ev) {
        if (!ev.submitter || ev.submitter.value !== 'ok') return; // Cancel closes the dialog
        ev.preventDefault();
        var body = { reason: document.getElementById('confirm-reason').value };
        if (plan) {
          var spec = plan.spec();
          if (spec.error) { showError(errEl, spec.error, extra, true); return; }
          if (spec.plan) body.plan = spec.plan;
        }
        errEl.innerHTML = '<p role="status">Sending ' + esc(cmd) + '…</p>';
        json('POST', 'rollouts/' + k + '/' + cmd, { body: body }).then(function (ns) {
          dlg.close('ok');
          document.getElementById('action-result').innerHTML = '<p role="status" id="action-done">' + esc(name) + ': ' + esc(key) + ' is now ' +
            esc(words(ns.state)) + ' at ' + num(ns.percent) + '%.</p>';
          clearTimeout(poller);
          poll();
        }).catch(function (e) { if (!(e instanceof SignedOut)) showError(errEl, e, extra, true); });
      };
      dlg.onclose = function () { if (plan) plan.stop(); };
      dlg.returnValue = '';
      dlg.showModal();
    }

    function drawChecks(s, looks) {
      var el = document.getElementById('checks');
      var v = s.verdict && s.verdict.detail;
      var names = [];
      looks.forEach(function (l) { (l.checks || []).forEach(function (c) { if (names.indexOf(c.check) < 0) names.push(c.check); }); });
      if (v) v.checks.forEach(function (c) { if (names.indexOf(c.check) < 0) names.push(c.check); });
      if (!names.length) { el.innerHTML = '<p class="nodata">No look by the judge yet.</p>'; charts = {}; return; }
      el.dataset.looks = looks.length;
      var xs = looks.map(function (l) { return Date.parse(l.at) / 1000; });
      var marks = [];
      (s.history || []).forEach(function (t) { if (t.at) marks.push(Date.parse(t.at) / 1000); });
      names.forEach(function (name) {
        var id = 'check-' + name.replace(/[^A-Za-z0-9_-]/g, '_');
        var art = document.getElementById(id);
        if (!art) {
          art = document.createElement('article');
          art.className = 'panel check';
          art.id = id;
          art.dataset.check = name;
          art.innerHTML = '<div class="check-text"></div><div class="charts">' +
            '<figure><div class="chart" data-chart="rates" role="img"></div><figcaption>Rate of bad events: treatment and control</figcaption></figure>' +
            '<figure><div class="chart" data-chart="ratio" role="img"></div><figcaption>Ratio with its always-valid interval, against tolerance and harm bound</figcaption></figure>' +
            '<figure><div class="chart" data-chart="evidence" role="img"></div><figcaption>Evidence (e-value, log scale) against its threshold</figcaption></figure></div>';
          el.appendChild(art);
        }
        var cur = null;
        if (v) v.checks.forEach(function (c) { if (c.check === name) cur = c; });
        var series = looks.map(function (l) {
          var found = null;
          (l.checks || []).forEach(function (c) { if (c.check === name) found = c; });
          return found;
        });
        if (!cur) cur = series[series.length - 1];
        art.querySelector('.check-text').innerHTML = checkText(name, cur);
        drawCharts(art, id, xs, series, marks);
      });
    }

    function drawCharts(art, id, xs, series, marks) {
      function col(f) { return series.map(function (c) { var x = c ? f(c) : null; return x == null || !isFinite(x) ? null : x; }); }
      var last = series[series.length - 1] || {};
      var rate = function (c) { return c.treatment && c.control ? c : null; };
      var sets = {
        rates: {
          data: [xs, col(function (c) { return rate(c) && c.treatment.rate; }), col(function (c) { return rate(c) && c.control.rate; })],
          series: [{ label: 'treatment', stroke: '#cf222e', width: 2 }, { label: 'control', stroke: '#0969da', width: 2 }],
          y: { values: function (u, v) { return v.map(function (x) { return pct(x); }); } }
        },
        ratio: {
          data: [xs, col(function (c) { return c.ratio || null; }), col(function (c) { return c.ciLow || null; }), col(function (c) { return c.ciHigh || null; }),
            col(function (c) { return c.tolerance || null; }), col(function (c) { return c.harmBound || null; })],
          series: [{ label: 'ratio', stroke: '#1b1f24', width: 2 }, { label: 'interval low', stroke: '#8c959f' }, { label: 'interval high', stroke: '#8c959f' },
            { label: 'tolerance', stroke: '#9a6700', dash: [6, 4] }, { label: 'harm bound', stroke: '#cf222e', dash: [2, 4] }],
          bands: [{ series: [3, 2], fill: 'rgba(9,105,218,0.15)' }],
          y: { distr: 3 }
        },
        evidence: {
          data: [xs, col(function (c) { return Math.max(c.eValue, 1e-3); }), col(function (c) { return c.threshold || null; })],
          series: [{ label: 'e-value', stroke: '#8250df', width: 2 }, { label: 'threshold', stroke: '#cf222e', dash: [6, 4] }],
          y: { distr: 3 }
        }
      };
      Object.keys(sets).forEach(function (kind) {
        var el = art.querySelector('[data-chart="' + kind + '"]');
        var set = sets[kind], key = id + ':' + kind;
        el.setAttribute('aria-label', chartLabel(kind, last));
        el.dataset.points = xs.length;
        var width = Math.max(260, el.clientWidth || 360);
        if (charts[key] && charts[key].series.length === set.data.length) {
          charts[key].marks = marks;
          charts[key].setData(set.data);
          if (Math.abs(charts[key].width - width) > 4) charts[key].setSize({ width: width, height: 220 });
          return;
        }
        if (charts[key]) charts[key].destroy();
        if (typeof uPlot === 'undefined') { el.textContent = 'Charts could not load.'; return; }
        var opts = {
          width: width, height: 220,
          scales: { x: { time: true }, y: set.y && set.y.distr ? { distr: set.y.distr } : {} },
          series: [{}].concat(set.series.map(function (s) { s.spanGaps = true; return s; })),
          axes: [{}, set.y && set.y.values ? { values: set.y.values, size: 60 } : { size: 60 }],
          bands: set.bands,
          legend: { live: false },
          cursor: { drag: { x: false, y: false } },
          plugins: [stepMarks()]
        };
        var u = new uPlot(opts, set.data, el);
        u.marks = marks;
        charts[key] = u;
      });
    }

    // Charts follow the page's width: a phone's column, a laptop's thirds.
    var resizing = null;
    function resize() {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        Object.keys(charts).forEach(function (k) {
          var u = charts[k], w = Math.max(260, u.root.parentNode.clientWidth);
          if (Math.abs(u.width - w) > 4) u.setSize({ width: w, height: 220 });
        });
      }, 100);
    }
    window.addEventListener('resize', resize);
    page = function () {
      stopped = true; clearInterval(timer); clearTimeout(poller); clearTimeout(resizing);
      window.removeEventListener('resize', resize);
      Object.keys(charts).forEach(function (k) { charts[k].destroy(); });
    };
    poll();
  }

  // auditLog shows the flag's audit log in el, newest first, 50 entries at
  // a time with a button for older ones.
  function auditLog(k, el, stopped) {
    var limit = 50, rows = [];
    function more(before) {
      json('GET', 'audit?limit=' + limit + '&flag=' + k + (before ? '&before=' + before : '')).then(function (a) {
        if (stopped()) return;
        var entries = a.entries || [];
        rows = rows.concat(entries.map(auditRow));
        el.innerHTML = rows.length ? '<table class="audit"><caption class="sr-only">Audit log, newest first</caption><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th>' +
          '<th scope="col" class="num">Version</th><th scope="col">Changed</th><th scope="col">Message</th></tr></thead><tbody>' + rows.join('') + '</tbody></table>' :
          '<p class="nodata">No entries.</p>';
        if (entries.length === limit) {
          var b = document.createElement('button');
          b.type = 'button';
          b.className = 'audit-more';
          b.textContent = 'Older entries';
          b.onclick = function () { more(entries[entries.length - 1].id); };
          el.appendChild(b);
        }
      }).catch(function (e) { failed(e, el); });
    }
    more(0);
  }

  // auditRow is one audit entry, with the fields of the flag it changed.
  function auditRow(e) {
    var changed = [];
    if (e.before && e.after) {
      Object.keys(Object.assign({}, e.before, e.after)).forEach(function (f) {
        if (f !== 'version' && JSON.stringify(e.before[f]) !== JSON.stringify(e.after[f])) changed.push(f);
      });
    }
    return '<tr><td>' + when(e.time) + '</td><td>' + esc(e.actor) + '</td><td>' + esc(e.action) + '</td><td class="num">' + esc(e.version || '') + '</td>' +
      '<td>' + esc(changed.join(', ')) + '</td><td>' + esc(e.message) + '</td></tr>';
  }

  // ---- the start dialog's plan ----

  // planFields are the plan's fields as the start request writes them
  // (controller/plan's Spec), each with a label that names it.
  var planFields = [
    { field: 'steps', kind: 'list', label: 'Steps, in percent' },
    { field: 'gates', kind: 'list', label: 'Gates: steps a person approves first, in percent' },
    { field: 'interval', kind: 'text', label: 'Time between looks' },
    { field: 'warmup', kind: 'text', label: 'Warm-up after a step change' },
    { field: 'minStepDuration', kind: 'text', label: 'Least time at a step' },
    { field: 'minRequests', kind: 'number', label: 'Requests per cohort a step needs' },
    { field: 'maxStepDuration', kind: 'text', label: 'Longest an undecided step lasts' },
    { field: 'onTimeout', kind: 'action', label: 'Then, at that timeout' },
    { field: 'onProviderError.after', kind: 'number', label: 'Unreadable looks in a row before acting' },
    { field: 'onProviderError.action', kind: 'action', label: 'Then, after those' },
    { field: 'alpha', kind: 'number', label: 'Alpha: the chance of a false rollback' },
    { field: 'metrics', kind: 'json', label: 'Metrics, a JSON list (it replaces the list as a whole)' }
  ];

  function planGet(p, field) {
    return field.split('.').reduce(function (o, f) { return o == null ? undefined : o[f]; }, p);
  }

  // literal is a number as typed when it is one, or the text as typed, so
  // that the server, which owns the plan's rules, says what is wrong with it.
  function literal(t) { return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t) ? Number(t) : t; }

  // planForm fills el with the plan a start of the flag would follow, each
  // field editable, and says below it what the start will do, as the
  // server resolves it (POST console/flags/KEY/plan) while the fields
  // change. Only the fields changed are sent: the others follow the flag's
  // plan and the defaults, as a start without them would.
  function planForm(el, k, errEl) {
    var stopped = false, timer = null, seq = 0;
    el.innerHTML = '<fieldset class="plan-form"><legend>The plan: the flag\'s and the defaults; change any field</legend>' +
      '<div class="plan-fields">' + planFields.map(function (f) {
        var id = 'plan-' + f.field.replace('.', '-');
        var label = '<label for="' + id + '">' + esc(f.label) + ' <code>' + esc(f.field) + '</code></label>';
        var common = ' id="' + id + '" data-field="' + f.field + '" autocomplete="off" spellcheck="false" aria-describedby="confirm-error"';
        if (f.kind === 'action') return '<div>' + label + '<select' + common + '><option value="pause">pause</option><option value="rollback">roll back</option></select></div>';
        if (f.kind === 'json') return '<div class="plan-metrics">' + label + '<textarea rows="4"' + common + '></textarea></div>';
        return '<div>' + label + '<input' + common + (f.kind === 'number' ? ' inputmode="decimal"' : '') + '></div>';
      }).join('') + '</div><p class="meta">A field emptied follows the flag\'s plan and the defaults; a list emptied is written empty (no gates).</p></fieldset>' +
      '<p id="confirm-plan" aria-live="polite">Reading the plan…</p>';
    var inputs = {};
    planFields.forEach(function (f) { inputs[f.field] = el.querySelector('[data-field="' + f.field + '"]'); });

    // spec is the fields changed, as the start request's plan, or an error
    // for metrics that are not JSON.
    function spec() {
      var out = {}, any = false, error = null;
      planFields.forEach(function (f) {
        var input = inputs[f.field], v = input.value;
        if (input.dataset.initial === undefined || v === input.dataset.initial) return; // not filled yet, or as it was
        var val;
        if (f.kind === 'list') val = v.split(/[\s,]+/).filter(Boolean).map(literal);
        else if (f.kind === 'number') { if (!v.trim()) return; val = literal(v.trim()); }
        else if (f.kind === 'json') {
          try { val = JSON.parse(v); } catch (e) { error = error || { message: 'plan.metrics: not JSON: ' + e.message, field: 'plan.metrics' }; return; }
        } else { if (!v.trim()) return; val = v.trim(); }
        var path = f.field.split('.'), o = out;
        if (path.length > 1) o = out[path[0]] = out[path[0]] || {};
        o[path[path.length - 1]] = val;
        any = true;
      });
      return error ? { error: error } : { plan: any ? out : null };
    }

    function preview() {
      var s = spec(), mine = ++seq;
      var said = document.getElementById('confirm-plan');
      if (s.error) {
        showError(errEl, s.error, el, false);
        said.textContent = 'The metrics must be a JSON list before the controller can say what the start will do.';
        return;
      }
      json('POST', 'console/flags/' + k + '/plan', { body: s.plan ? { plan: s.plan } : {} }).then(function (r) {
        if (stopped || mine !== seq) return;
        errEl.innerHTML = '';
        el.querySelectorAll('[aria-invalid]').forEach(function (i) { i.removeAttribute('aria-invalid'); });
        fill(r);
        said.textContent = 'What will happen: ' + planText(r.plan);
      }).catch(function (e) {
        if (stopped || mine !== seq || e instanceof SignedOut) return;
        showError(errEl, e, el, false);
        said.textContent = 'The controller refuses this plan, as it says above; a start with it would be refused the same way.';
      });
    }

    // fill shows the plan as resolved in each field nobody has changed
    // (a warm-up not written follows the interval that is); the metrics
    // as the flag writes them when it does, so that its zeros (no harm
    // bound, no floor) stay written. Fields left so are not sent.
    function fill(r) {
      planFields.forEach(function (f) {
        var input = inputs[f.field];
        if (input.dataset.initial !== undefined && (input.value !== input.dataset.initial || input === document.activeElement)) return;
        var v = planGet(r.plan, f.field);
        if (f.field === 'metrics' && r.written && r.written.metrics) v = r.written.metrics;
        input.value = f.kind === 'list' ? (v || []).join(', ') : f.kind === 'json' ? '[\n' + (v || []).map(function (m) { return JSON.stringify(m); }).join(',\n') + '\n]' : String(v == null ? '' : v);
        input.dataset.initial = input.value;
      });
    }

    el.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(preview, 300); });
    el.addEventListener('change', function () { clearTimeout(timer); timer = setTimeout(preview, 300); });
    preview();
    return { spec: spec, stop: function () { stopped = true; clearTimeout(timer); } };
  }

  // showError says in the dialog what the server refused, and marks the
  // field it names, such as plan.steps[1]; on a refused submit it takes the
  // focus there.
  function showError(errEl, e, fields, focus) {
    errEl.innerHTML = '<p class="error" role="alert" id="confirm-refused">' + esc(e.message) + '</p>';
    var name = String(e.field || '').replace(/^plan\./, '').replace(/\[.*$/, '');
    var input = name && fields.querySelector('[data-field="' + name + '"]');
    fields.querySelectorAll('[aria-invalid]').forEach(function (i) { i.removeAttribute('aria-invalid'); });
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      if (focus) input.focus();
    }
  }

  // ---- a flag ----

  function flagPage(key) {
    document.title = key + ' (flag) · Vigil';
    var k = encodeURIComponent(key);
    main.innerHTML = '<p><a href="#/">← All rollouts</a> · <a id="rollout-link" href="#/rollouts/' + k + '">The rollout of ' + esc(key) + '</a></p>' +
      '<h1 id="title">' + esc(key) + ' <span class="meta">flag, read only</span></h1><div id="flag-error"></div>' +
      '<section class="panel" aria-labelledby="def-h"><h2 id="def-h">Definition</h2><div id="definition"></div></section>' +
      '<section class="panel" aria-labelledby="plan-h"><h2 id="plan-h">Plan</h2><div id="plan"></div></section>' +
      '<section class="panel" aria-labelledby="eval-h"><h2 id="eval-h">Evaluate for a unit</h2>' +
      '<p class="meta">Which variant a unit gets now, and why, by the evaluation the SDKs run.</p>' +
      '<form id="eval-form"><label for="eval-unit">Unit</label><input id="eval-unit" autocomplete="off" spellcheck="false" required>' +
      '<label for="eval-attrs">Attributes, one <code>name=value</code> a line (optional)</label><textarea id="eval-attrs" rows="2" spellcheck="false"></textarea>' +
      '<button type="submit">Evaluate</button></form><div id="eval-result" aria-live="polite"></div></section>' +
      '<section aria-labelledby="audit-h"><h2 id="audit-h">Audit log</h2><div id="audit" class="table-wrap"></div></section>' +
      '<section aria-labelledby="stored-h"><h2 id="stored-h">As stored</h2><details><summary>The flag as JSON</summary><pre id="flag"></pre></details></section>';
    var stopped = false, poller = null, version = -1;
    function isStopped() { return stopped; }

    function poll() {
      json('GET', 'flags/' + k).then(function (f) {
        if (stopped || f.version === version) return;
        version = f.version;
        drawFlag(f);
        json('POST', 'console/flags/' + k + '/plan', { body: {} }).then(function (p) { if (!stopped) drawPlan(p); })
          .catch(function (e) { failed(e, document.getElementById('plan')); });
        auditLog(k, document.getElementById('audit'), isStopped);
        document.getElementById('flag-error').innerHTML = '';
      }).catch(function (e) { if (!stopped) failed(e, document.getElementById('flag-error')); })
        .then(function () { if (!stopped) poller = setTimeout(poll, pollEvery); });
    }

    function drawFlag(f) {
      var role = function (v) { return v === f.control ? 'control' : v === f.treatment ? 'treatment' : ''; };
      var h = (f.description ? '<p>' + esc(f.description) + '</p>' : '') +
        '<p id="flag-enabled">' + (f.enabled ? badge('v', 'pass', 'enabled') : badge('v', 'none', 'disabled')) + ' version ' + esc(f.version) +
        (f.rollout ? ' · rollout percent ' + num(f.rollout.percent) + '%' : '') + (f.salt ? ' · salt <code>' + esc(f.salt) + '</code>' : '') + '</p>' +
        '<h3>Variants</h3><div class="table-wrap"><table id="variants"><thead><tr><th scope="col">Variant</th><th scope="col">Value</th><th scope="col">Role</th></tr></thead><tbody>' +
        Object.keys(f.variants || {}).sort().map(function (v) {
          return '<tr><th scope="row">' + esc(v) + '</th><td><code>' + esc(JSON.stringify(f.variants[v])) + '</code></td><td>' + esc(role(v)) + '</td></tr>';
        }).join('') + '</tbody></table></div>';
      var targets = f.targets || [];
      h += '<h3>Targets</h3>' + (targets.length ? '<div class="table-wrap"><table id="targets"><thead><tr><th scope="col">Variant</th><th scope="col">Units</th></tr></thead><tbody>' +
        targets.map(function (t) { return '<tr><td>' + esc(t.variant) + '</td><td>' + esc((t.units || []).join(', ')) + '</td></tr>'; }).join('') + '</tbody></table></div>' :
        '<p class="nodata">None.</p>');
      var rules = f.rules || [];
      h += '<h3>Rules, in order</h3>' + (rules.length ? '<ol id="rules">' + rules.map(function (r) {
        return '<li>' + (r.when || []).map(function (c) {
          return '<code>' + esc(c.attribute) + '</code> ' + esc(words(c.op)) + ' ' + (c.values || []).map(function (v) { return '<code>' + esc(v) + '</code>'; }).join(', ');
        }).join(' and ') + ' → ' + esc(r.variant) + '</li>';
      }).join('') + '</ol>' : '<p class="nodata">None.</p>');
      h += '<p class="meta">A target comes first, then the first rule that matches, then the rollout\'s split' +
        (f.treatment ? ' between ' + esc(f.control) + ' and ' + esc(f.treatment) : '') + '; a disabled flag serves ' + esc(f.control) + ' to everyone.</p>';
      document.getElementById('definition').innerHTML = h;
      document.getElementById('flag').textContent = JSON.stringify(f, null, 2);
    }

    function drawPlan(p) {
      document.getElementById('plan').innerHTML = '<p id="plan-sentence">' + esc(planText(p.plan)) + '</p>' +
        '<p class="meta">' + (p.written ? 'The flag writes its own plan; the defaults fill the rest.' : 'The flag writes no plan: this is the defaults.') +
        ' A start may override any field.</p>' + planFigures(p.plan) +
        (p.written ? '<details><summary>The plan as the flag writes it</summary><pre id="plan-written">' + esc(JSON.stringify(p.written, null, 2)) + '</pre></details>' : '');
    }

    document.getElementById('eval-form').onsubmit = function (ev) {
      ev.preventDefault();
      var out = document.getElementById('eval-result');
      var attrs = {}, bad = '';
      document.getElementById('eval-attrs').value.split('\n').forEach(function (line, i) {
        line = line.trim();
        if (!line) return;
        var at = line.indexOf('=');
        if (at < 1) { bad = bad || 'Attribute line ' + (i + 1) + ' "' + line + '": want name=value.'; return; }
        attrs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      });
      if (bad) { out.innerHTML = '<p class="error" role="alert">' + esc(bad) + '</p>'; return; }
      var unit = document.getElementById('eval-unit').value;
      json('POST', 'console/flags/' + k + '/evaluate', { body: { unit: unit, attributes: attrs } }).then(function (r) {
        out.innerHTML = evalText(r);
      }).catch(function (e) { failed(e, out); });
    };

    page = function () { stopped = true; clearTimeout(poller); };
    poll();
  }

  // planText says in words what a resolved plan will do.
  function planText(p) {
    var steps = (p.steps || []).map(function (x) { return num(x) + '%'; });
    var t = 'Steps ' + steps.join(' → ') + ' (reaching 100% is promotion). The judge looks every ' + p.interval +
      ', from ' + p.warmup + ' into each step; a step lasts at least ' + p.minStepDuration + ' and passes once each cohort has ' +
      count(p.minRequests) + ' requests in it and every check shows no harm. Undecided after ' + p.maxStepDuration + ': ' + words(p.onTimeout) +
      '. After ' + (p.onProviderError || {}).after + ' looks whose metrics cannot be read: ' + words((p.onProviderError || {}).action) +
      '. Checks: ' + (p.metrics || []).map(function (m) {
        var b = [];
        if (m.tolerance) b.push('tolerance ' + num(m.tolerance));
        if (m.maxRatio) b.push('harm bound ' + num(m.maxRatio));
        if (m.max) b.push('at most ' + pct(m.max));
        if (m.maxP99) b.push('p99 at most ' + m.maxP99);
        if (m.minDifference) b.push('floor ' + num(m.minDifference) + ' points');
        if (m.minSlowdown) b.push('floor ' + m.minSlowdown);
        return m.name + (b.length ? ' (' + b.join(', ') + ')' : '');
      }).join('; ') + '. The chance of a false rollback is at most ' + pct(p.alpha) + '.';
    if (p.gates && p.gates.length) t += ' A person approves ' + p.gates.map(function (g) { return num(g) + '%'; }).join(', ') + ' (resume) before the rollout moves there.';
    return t;
  }

  // planFigures lists a resolved plan's fields as the API names them.
  function planFigures(p) {
    var pe = p.onProviderError || {};
    var f = [['steps', (p.steps || []).join(', ')], ['gates', (p.gates || []).join(', ') || 'none'], ['interval', p.interval], ['warmup', p.warmup],
      ['minStepDuration', p.minStepDuration], ['minRequests', count(p.minRequests)], ['maxStepDuration', p.maxStepDuration], ['onTimeout', p.onTimeout],
      ['onProviderError', pe.after + ' looks, then ' + pe.action], ['alpha', num(p.alpha)]];
    return '<dl class="figures" id="plan-figures">' + f.map(function (x) { return '<div><dt>' + esc(x[0]) + '</dt><dd>' + esc(x[1]) + '</dd></div>'; }).join('') + '</dl>';
  }

  // stepMarks draws a dashed line at each time in the chart's marks: the
  // rollout's transitions, step advances included.
  function stepMarks() {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx, b = u.bbox;
          ctx.save();
          ctx.strokeStyle = '#57606a';
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          (u.marks || []).forEach(function (t) {
            var x = Math.round(u.valToPos(t, 'x', true));
            if (x < b.left || x > b.left + b.width) return;
            ctx.beginPath(); ctx.moveTo(x, b.top); ctx.lineTo(x, b.top + b.height); ctx.stroke();
          });
          ctx.restore();
        }
      }
    };
  }

  function chartLabel(kind, c) {
    if (!c) return 'No data';
    if (kind === 'rates') return 'Treatment rate ' + pct(c.treatment && c.treatment.rate) + ', control rate ' + pct(c.control && c.control.rate);
    if (kind === 'ratio') return 'Ratio ' + num(c.ratio) + ', interval ' + num(c.ciLow) + ' to ' + num(c.ciHigh) + ', tolerance ' + num(c.tolerance) + (c.harmBound ? ', harm bound ' + num(c.harmBound) : '');
    return 'E-value ' + num(c.eValue) + ' of threshold ' + num(c.threshold);
  }

  // evalText says in words what an evaluation for a unit returned.
  function evalText(r) {
    var why = {
      targeting_match: 'a target or a rule of the flag names this unit',
      split: 'the rollout split places it',
      disabled: 'the flag is disabled',
      'default': 'no target, rule or split applies',
      error: 'the evaluation failed' + (r.errorType ? ' (' + r.errorType + ')' : '')
    }[r.reason] || r.reason;
    var h = '<p id="eval-sentence"><strong>' + esc(r.unit || '(no unit)') + '</strong> gets ' +
      (r.variant ? badge('v', 'none', r.variant) + ' ' : '') + '<code>' + esc(JSON.stringify(r.value)) + '</code>: ' +
      esc(why) + ' <span class="meta">(reason ' + esc(r.reason) + ', flag version ' + esc(r.version) + ')</span>.</p>';
    if (r.bucket != null && r.percent != null) {
      var cut = r.percent * 1000;
      h += '<p>Its bucket is ' + count(r.bucket) + ' of 100,000; the split gives the treatment to buckets below ' + count(cut) +
        ' (' + num(r.percent) + '%), so a split would place it in ' + (r.bucket < cut ? 'the treatment' : 'control') + '.</p>';
    }
    return h;
  }

  function checkText(name, c) {
    if (!c) return '<h3>' + esc(name) + '</h3><p class="nodata">Not judged at the latest look.</p>';
    function fig(label, value) { return '<div><dt>' + esc(label) + '</dt><dd>' + value + '</dd></div>'; }
    var f = fig('ratio', num(c.ratio));
    if (c.ciHigh) f += fig('interval at ' + pct(c.ciLevel), num(c.ciLow) + ' to ' + num(c.ciHigh));
    if (c.tolerance) f += fig(c.bound ? 'bound' : 'tolerance', num(c.tolerance));
    if (c.harmBound) f += fig('harm bound', num(c.harmBound));
    if (c.floorRatio) f += fig('practical floor (ratio)', num(c.floorRatio));
    f += fig('e-value / threshold', num(c.eValue) + ' / ' + num(c.threshold));
    f += fig('dispersion', num(c.dispersion));
    if (c.treatment) f += fig('treatment', pct(c.treatment.rate) + ' (' + count(c.treatment.events) + ' of ' + count(c.treatment.requests) + ')');
    if (c.control) f += fig('control', pct(c.control.rate) + ' (' + count(c.control.events) + ' of ' + count(c.control.requests) + ')');
    if (c.stepRequests) f += fig('requests this step', count(c.stepRequests.treatment) + ' / ' + count(c.stepRequests.control));
    return '<h3>' + esc(name) + ' ' + badge('v', c.outcome) + '</h3><p class="explanation">' + esc(c.explanation) + '</p>' +
      (c.reason ? '<p class="meta">' + esc(c.reason) + '</p>' : '') + '<dl class="figures">' + f + '</dl>';
  }

  // Enter in a field of the confirmation does nothing: its buttons decide.
  // (A form submits by its first button, Cancel, which would quietly drop
  // what was typed.)
  ['keydown', 'keypress'].forEach(function (type) {
    document.getElementById('confirm-form').addEventListener(type, function (e) {
      if (e.key === 'Enter' && e.target.tagName === 'INPUT') e.preventDefault();
    });
  });
  window.addEventListener('hashchange', route);
  route();
})();
