import './lib/csp-nonce.js';
import '@xterm/xterm/css/xterm.css';
import './styles.css';
import { render } from 'preact';
import { App } from './app.js';

render(<App />, document.getElementById('app') as HTMLElement);
