export { ApiClient, CliError } from './client.js';
