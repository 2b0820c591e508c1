import { FitAddon } from '@xterm/addon-fit';
import { Terminal as XTerm } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { getToken } from './lib/api.js';
import { ExecSession, type ServerControl } from './lib/exec.js';
import { copyText } from './components.js';

type TermState =
  | { kind: 'idle' }
  | { kind: 'connecting' }
  | { kind: 'open'; sessionId: string }
  | { kind: 'ended'; message: string; suggestion?: string; tone: 'ok' | 'bad' };

/**
 * A shell in the workspace: xterm.js over the exec WebSocket. It fits its box (and
 * tells the server the new size), copies the selection, and reconnects on request.
 */
export function WebTerminal({ workspaceId, autoConnect }: { workspaceId: string; autoConnect?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const term = useRef<XTerm>();
  const fit = useRef<FitAddon>();
  const session = useRef<ExecSession>();
  const [state, setState] = useState<TermState>({ kind: 'idle' });
  const [copied, setCopied] = useState(false);
  const [size, setSize] = useState({ cols: 0, rows: 0 });

  const connect = () => {
    session.current?.close();
    const t = term.current;
    const token = getToken();
    if (!t || !token) return;
    t.reset();
    setState({ kind: 'connecting' });
    let started = false;
    let ended = false;
    const s = new ExecSession(workspaceId, token, { cols: t.cols, rows: t.rows }, {
      onOutput: (data) => t.write(data),
      onControl: (m: ServerControl) => {
        if (m.type === 'started') {
          started = true;
          setState({ kind: 'open', sessionId: m.sessionId });
          t.focus();
        } else if (m.type === 'exit') {
          ended = true;
          setState({ kind: 'ended', message: `The shell exited with code ${m.code}.`, tone: m.code === 0 ? 'ok' : 'bad' });
        } else {
          ended = true;
          setState({ kind: 'ended', message: m.message, suggestion: m.suggestion, tone: 'bad' });
        }
      },
      onClose: (code, reason) => {
        if (session.current !== s || ended) return;
        setState({
          kind: 'ended',
          tone: 'bad',
          message: started
            ? `The connection closed (${code}${reason ? `: ${reason}` : ''}).`
            : `Could not open a terminal (the connection closed with ${code}${reason ? `: ${reason}` : ''}).`,
          suggestion: started ? 'Reconnect to start a new shell.' : 'Check that the workspace is running and that this control plane serves the exec endpoint, then reconnect.',
        });
      },
    });
    session.current = s;
  };

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const t = new XTerm({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      lineHeight: 1.2,
      scrollback: 5000,
      theme: { background: '#1d2320', foreground: '#e6e3da', cursor: '#9fd3b8', selectionBackground: '#3d5a4d' },
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.open(el);
    f.fit();
    term.current = t;
    fit.current = f;
    const input = t.onData((d) => session.current?.send(d));
    const binary = t.onBinary((d) => session.current?.send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    setSize({ cols: t.cols, rows: t.rows });
    const resized = t.onResize(({ cols, rows }) => {
      setSize({ cols, rows });
      session.current?.resize(cols, rows);
    });
    const observer = new ResizeObserver(() => {
      try {
        f.fit();
      } catch {
        // not laid out yet
      }
    });
    observer.observe(el);
    if (autoConnect) connect();
    return () => {
      observer.disconnect();
      input.dispose();
      binary.dispose();
      resized.dispose();
      session.current?.close();
      session.current = undefined;
      t.dispose();
    };
  }, [workspaceId]);

  const copy = async () => {
    const text = term.current?.getSelection() ?? '';
    if (!text) return;
    await copyText(text);
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };

  return (
    <section class="terminal-card" aria-labelledby="terminal-title">
      <div class="terminal-bar">
        <h2 id="terminal-title" class="terminal-title">
          Terminal
        </h2>
        <span class={`term-state term-${state.kind === 'ended' ? state.tone : state.kind}`} role="status" data-terminal={state.kind}>
          {state.kind === 'idle'
            ? 'Not connected'
            : state.kind === 'connecting'
              ? 'Connecting…'
              : state.kind === 'open'
                ? 'Connected'
                : state.message}
        </span>
        <span class="spacer" />
        <button type="button" class="btn btn-small btn-dark" onClick={copy} title="Copy the selected text">
          {copied ? 'Copied' : 'Copy selection'}
        </button>
        <button type="button" class="btn btn-small btn-dark" onClick={connect}>
          {state.kind === 'idle' ? 'Connect' : 'Reconnect'}
        </button>
      </div>
      {state.kind === 'ended' && state.suggestion ? <p class="terminal-hint">{state.suggestion}</p> : null}
      <div class="term-box" ref={box} data-cols={size.cols} data-rows={size.rows} />
    </section>
  );
}
