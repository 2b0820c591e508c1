import './lib/csp-nonce.js';
import '@xterm/xterm/css/xterm.css';
import './styles/base.css';
import './styles/controls.css';
import './styles/components.css';
import './styles/pages.css';
import { render } from 'preact';
import { App } from './app.js';

render(<App />, document.getElementById('app') as HTMLElement);
