import Audit
import Foundation

/// The pages' shared frame: the layout, and the one stylesheet and script, served from the
/// dashboard itself (no CDN, no external fonts; the Content-Security-Policy allows only 'self').
/// Text is escaped with Audit's `HTMLText`, which `keyline report` uses too.
enum HTMLPage {
    static func layout(title: String, page: String, bodyAttributes: String = "", content: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTMLText.escaped(title)) · keyline</title>
        <link rel="stylesheet" href="/dashboard.css">
        <script src="/dashboard.js" defer></script>
        </head>
        <body data-page="\(page)"\(bodyAttributes)>
        <header><nav><a href="/" id="nav-floor">Floor</a> <a href="/audit" id="nav-audit">Audit</a></nav>
        <span id="connection" data-state="connecting">connecting…</span></header>
        <main>
        \(content)
        </main>
        </body>
        </html>

        """
    }

    static let stylesheet = """
        body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
        header { display: flex; justify-content: space-between; padding: .5rem 1rem; background: #1d2330; color: #fff; }
        header a { color: #fff; margin-right: 1rem; }
        #connection[data-state="live"] { color: #7fd88f; } #connection[data-state="lost"] { color: #ff8a80; }
        main { padding: 1rem; }
        #alarms:empty { display: none; }
        #alarms .alarm { background: #c62828; color: #fff; padding: .4rem .8rem; margin: .2rem 0; border-radius: 4px; }
        .station { background: #fff; border-radius: 6px; padding: .6rem 1rem; margin-bottom: 1rem; box-shadow: 0 1px 2px #0002; }
        .station h2 { margin: .2rem 0; font-size: 1.1rem; }
        .figures { color: #555; font-size: .9rem; }
        .tiles { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .5rem; }
        .tile { width: 15rem; border: 2px solid #ccd; border-radius: 6px; padding: .4rem; font-size: .85rem; background: #fafbfc; }
        .tile[data-state="running"] { border-color: #1565c0; }
        .tile[data-state="done"] { border-color: #2e7d32; }
        .tile[data-state="failed"] { border-color: #c62828; background: #ffebee; }
        .tile[data-state="not-permitted"] { border-color: #777; background: repeating-linear-gradient(45deg, #eee, #eee 6px, #ddd 6px, #ddd 12px); }
        .tile .reason { color: #b71c1c; display: block; margin-top: .2rem; word-break: break-word; }
        .stepper { list-style: none; padding: 0; margin: .3rem 0; display: flex; flex-wrap: wrap; gap: 2px; }
        .stepper li { font-size: .7rem; padding: 1px 4px; border-radius: 3px; background: #e0e0e0; }
        .stepper li.passed { background: #c8e6c9; } .stepper li.current { background: #1565c0; color: #fff; }
        .stepper li.failed { background: #c62828; color: #fff; } .stepper li.pending { background: #fff3c4; }
        table { border-collapse: collapse; background: #fff; font-size: .85rem; }
        td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
        tr[data-state="failed"] td { background: #ffebee; }
        .mono { font-family: ui-monospace, monospace; }
        """

    /// Live updates: the floor fragment arrives whole over Server-Sent Events (`event: floor`);
    /// other pages reload their part when a change names what they show (`event: change`).
    static let script = """
        (function () {
          var connection = document.getElementById('connection');
          function mark(state, text) { if (connection) { connection.dataset.state = state; connection.textContent = text; } }
          // The login and error pages show nothing live (and /events would refuse a viewer without the token).
          if (document.body.dataset.page === 'login' || document.body.dataset.page === 'error') { mark('off', ''); return; }
          var source = new EventSource('/events');
          source.onopen = function () { mark('live', 'live'); };
          source.onerror = function () { mark('lost', 'reconnecting…'); };
          source.addEventListener('floor', function (event) {
            var floor = document.getElementById('floor');
            if (floor) { floor.innerHTML = event.data; }
          });
          var pending = null;
          source.addEventListener('change', function (event) {
            var live = document.querySelector('[data-live-url]');
            if (!live) { return; }
            var change = {};
            try { change = JSON.parse(event.data); } catch (e) { return; }
            var job = live.dataset.job;
            if (job && String(change.job) !== job) { return; }
            if (pending) { return; }
            pending = setTimeout(function () {
              pending = null;
              fetch(live.dataset.liveUrl, { credentials: 'same-origin' })
                .then(function (reply) { return reply.ok ? reply.text() : null; })
                .then(function (html) { if (html !== null) { live.innerHTML = html; } });
            }, 150);
          });
        })();
        """
}
