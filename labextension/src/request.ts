import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The server extension's routes, under `{base_url}/jupyter-edge/api/`. */
export const API_NAMESPACE = 'jupyter-edge/api';

/**
 * Call a jupyter-edge route and return its JSON. A 4xx or 5xx throws
 * `ServerConnection.ResponseError` carrying the server's own message.
 */
export async function requestAPI<T = unknown>(
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error below
    }
  }
  if (!response.ok) {
    const message =
      typeof data === 'object' && data !== null && 'message' in data
        ? String((data as { message: unknown }).message)
        : String(data);
    throw new ServerConnection.ResponseError(response, message);
  }
  return data as T;
}
