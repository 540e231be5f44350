/* eTicket web screen (appliance/web/screen_page.py). ES5, no build step: it must run on old Android tablets.
 * The page never navigates: a navigation to a device that is restarting would land on the browser's error
 * page. It follows the display stream, fetches each new scene as an HTML fragment (/screen/view) and swaps
 * it in; when the device cannot be reached it draws "Connecting..." and retries (0.5 s doubling to 5 s).
 * Tabs of one screen in one browser elect a leader over BroadcastChannel: only the leader holds the stream
 * (a browser keeps six connections per host over HTTP/1.1) and hands each fragment to the others. */
(function () {
  'use strict';
  var MIN_DELAY_MS = 500, MAX_DELAY_MS = 5000, POLL_MS = 3000, REQUEST_TIMEOUT_MS = 10000;
  var COUNTDOWN_MS = 5000, HEARTBEAT_MS = 1000, LEASE_MS = 3500, ELECTION_MS = 250, JITTER_MS = 250;
  var root = document.documentElement;
  var view = document.getElementById('view');
  var query = '?key=' + encodeURIComponent(root.getAttribute('data-key'));
  var delay = MIN_DELAY_MS, timer = null, source = null, stopped = false, asked = 0;
  var shown = view.innerHTML, seq = seqOf(), drawnAt = new Date().getTime();
  var channel = null, leader = false, seen = 0;
  var me = new Date().getTime() + '.' + Math.random().toString(36).slice(2);

  function now() { return new Date().getTime(); }

  function seqOf() {
    var scene = view.getElementsByTagName('div')[0];
    return scene ? scene.getAttribute('data-seq') : null;
  }

  function text(value) {
    return String(value || '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }

  function tell(message) {
    if (channel) { try { channel.postMessage(message); } catch (e) { /* the channel was closed */ } }
  }

  /* Count down the lines that say how long something stays valid (data-left: seconds at drawing time). */
  function countDown() {
    var lines = view.getElementsByTagName('p'), i, left, minutes;
    for (i = 0; i < lines.length; i++) {
      if (lines[i].getAttribute('data-left') === null) { continue; }
      left = Number(lines[i].getAttribute('data-left')) * 1000 - (now() - drawnAt);
      minutes = Math.ceil(left / 60000);
      lines[i].textContent = left > 0 ? lines[i].getAttribute('data-text').replace('{minutes}', minutes) : '';
    }
  }

  function draw(markup) {
    if (markup !== shown) {
      view.innerHTML = markup;
      shown = markup;
      drawnAt = now();
      seq = seqOf();
      var scene = view.getElementsByTagName('div')[0];
      if (scene && scene.getAttribute('data-title')) { document.title = scene.getAttribute('data-title'); }
      if (scene && scene.getAttribute('lang')) { root.setAttribute('lang', scene.getAttribute('lang')); }
    }
    if (leader) { tell({t: 'view', id: me, html: markup}); }
  }

  function connecting() {
    draw('<div class=scene data-scene=connecting><div class=cell><p class=big>' +
         text(root.getAttribute('data-connecting')) + '</p><p class=mid>' +
         text(root.getAttribute('data-starting')) + '</p></div></div>');
  }

  /* GET the scene fragment; draw it (200, or 401 "not paired"); done(status), 0 when unreachable. */
  function load(done) {
    var mine = ++asked, xhr = new XMLHttpRequest(), finished = false;
    function end(status) {
      if (finished) { return; }
      finished = true;
      if (mine !== asked) { return; }  /* a newer request answers instead */
      if (status === 200 || status === 401) { draw(xhr.responseText); }
      done(status);
    }
    xhr.open('GET', '/screen/view' + query, true);
    try { xhr.timeout = REQUEST_TIMEOUT_MS; } catch (e) { /* old browsers: no timeout */ }
    xhr.onreadystatechange = function () { if (xhr.readyState === 4) { end(xhr.status); } };
    try { xhr.send(); } catch (e) { end(0); }
  }

  function close() {
    if (source) { source.onerror = null; source.close(); source = null; }
  }

  function stop() {  /* the key was refused (the screen was revoked): nothing will ever come */
    stopped = true;
    close();
    clearTimeout(timer);
  }

  function retry() {
    if (stopped || !leader) { return; }
    close();
    clearTimeout(timer);
    timer = setTimeout(function () {
      load(function (status) {
        if (!leader || stopped) { return; }
        if (status === 200) { follow(); } else if (status === 401) { stop(); } else { connecting(); retry(); }
      });
    }, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  function follow() {
    if (stopped || !leader) { return; }
    close();
    if (!window.EventSource) {  /* very old browsers: poll */
      timer = setTimeout(function () {
        load(function (status) {
          if (status === 401) { stop(); } else if (status !== 200) { connecting(); }
          follow();
        });
      }, POLL_MS);
      return;
    }
    source = new EventSource('/api/v1/display/stream' + query);
    source.addEventListener('state', function (event) {
      delay = MIN_DELAY_MS;
      var state = null;
      try { state = JSON.parse(event.data); } catch (e) { return; }
      if (state && String(state.seq) !== seq) {
        load(function (status) { if (status === 401) { stop(); } else if (status !== 200) { retry(); } });
      }
    });
    source.onerror = retry;  /* the stream ended or never opened: the device restarts, or the key was revoked */
  }

  function lead() {
    if (leader) { return; }
    leader = true;
    tell({t: 'hb', id: me});
    tell({t: 'view', id: me, html: shown});
    follow();
  }

  function stepDown() {
    leader = false;
    close();
    clearTimeout(timer);
  }

  setInterval(countDown, COUNTDOWN_MS);
  if (!window.BroadcastChannel) { lead(); return; }
  try { channel = new BroadcastChannel('eticket-screen:' + root.getAttribute('data-key')); } catch (e) {
    lead();
    return;
  }
  channel.onmessage = function (event) {
    var message = event.data || {};
    if (message.t === 'hello') {
      if (leader) { tell({t: 'hb', id: me}); tell({t: 'view', id: me, html: shown}); }
    } else if (message.t === 'bye') {
      if (!leader) {
        seen = 0;
        setTimeout(function () { if (!seen) { lead(); } }, Math.random() * JITTER_MS);
      }
    } else if (message.t === 'hb' || message.t === 'view') {
      if (leader && message.id > me) { tell({t: 'hb', id: me}); return; }  /* two leaders: the lower id stays */
      if (leader) { stepDown(); }
      seen = now();
      if (message.t === 'view' && typeof message.html === 'string') { draw(message.html); }
    }
  };
  setInterval(function () {
    if (leader) { tell({t: 'hb', id: me}); } else if (seen && now() - seen > LEASE_MS) { seen = 0; lead(); }
  }, HEARTBEAT_MS);
  window.addEventListener('pagehide', function () { if (leader) { tell({t: 'bye', id: me}); } });
  tell({t: 'hello'});
  setTimeout(function () { if (!seen) { lead(); } }, ELECTION_MS + Math.random() * JITTER_MS);
})();
