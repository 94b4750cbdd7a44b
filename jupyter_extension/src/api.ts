import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error the server extension answered (or could not: then `missing` says the extension is not there). */
export class LabclusterAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null,
    readonly missing = false
  ) {
    super(message);
  }
}

/** Call the sidebar's REST API (labcluster/server/handlers.py), authenticated as every Jupyter request is. */
export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'labcluster', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new LabclusterAPIError(`the Jupyter server does not answer: ${error}`, 0);
  }
  const text = await response.text();
  let body: any = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    if (response.status === 404 && (body === null || body.error === undefined)) {
      throw new LabclusterAPIError(
        "labcluster's server extension is not running in this Jupyter server: install labcluster in the " +
          "server's environment, run `jupyter server extension enable labcluster.server`, and restart it",
        404,
        null,
        true
      );
    }
    // ours answer {error, field}; Jupyter's own refusals (403 from its Authorizer) {message}
    let message: string = body?.error ?? body?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 403 && body?.error === undefined) {
      message = /not authorized/i.test(message)
        ? `this Jupyter server does not allow you to do that: ${message}`
        : `the Jupyter server refused the request (${message}): your login may have expired; reload the page`;
    }
    throw new LabclusterAPIError(message, response.status, body?.field ?? null);
  }
  return body as T;
}
