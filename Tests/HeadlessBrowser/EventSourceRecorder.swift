/// A script for `HeadlessChromium.open(_:initScript:)` that records what the page's own
/// `EventSource` streams deliver, with the time of arrival in the page (`Date.now()`, the same
/// clock as the host's), without opening another stream: each event the page listens for is also
/// appended to `window.__eventSourceLog` as `{type, at, value}`.
public enum EventSourceRecorder {
    /// `summarize` is a JavaScript function expression `(type, data) => value` that decides what is
    /// kept of each event (the whole data by default; a bench keeps less); a `null` value keeps nothing.
    public static func script(summarize: String = "(type, data) => data") -> String {
        """
        (() => {
          const Native = window.EventSource;
          if (!Native || Native.__recorded) { return; }
          const summarize = \(summarize);
          window.__eventSourceLog = [];
          function record(type) {
            return (event) => {
              const at = Date.now();
              const value = summarize(type, event.data);
              if (value !== null) { window.__eventSourceLog.push({ type, at, value }); }
            };
          }
          function Recorded(url, options) {
            const source = new Native(url, options);
            const types = new Set(['message']);
            source.addEventListener('message', record('message'));
            const add = source.addEventListener.bind(source);
            // Named events reach only listeners of their type: record each type the page listens for.
            source.addEventListener = (type, listener, more) => {
              if (!types.has(type)) { types.add(type); add(type, record(type)); }
              return add(type, listener, more);
            };
            return source;
          }
          Recorded.prototype = Native.prototype;
          Recorded.CONNECTING = Native.CONNECTING; Recorded.OPEN = Native.OPEN; Recorded.CLOSED = Native.CLOSED;
          Recorded.__recorded = true;
          window.EventSource = Recorded;
        })();
        """
    }
}
