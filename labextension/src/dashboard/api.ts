/**
 * Calls to the manager that serves the page, with the session's bearer token. Errors are
 * the core's ApiError, carrying the manager's own message and reason.
 */

import { IActionApi } from '../core/actions';
import { ApiError, errorFromResponse, isAbort } from '../core/errors';
import { ITokenRequest } from '../core/tokens';
import {
  ICreatedToken,
  IEvent,
  IHealth,
  ILoginAnswer,
  IService,
  IToken,
  IUsage,
  IUser,
  IWhoami,
  LifecycleAction
} from '../core/types';
import { ManagerUrls } from '../core/urls';
import { endSession, session, SESSION_ENDED } from './session';

/** Relative: the page is served by the manager, perhaps behind a proxy's prefix. */
const BASE = '';

interface IRequestOptions {
  signal?: AbortSignal;
  /** A 401 is the caller's business, not the end of the session (logging out). */
  keepSession?: boolean;
}

export class ManagerApi implements IActionApi {
  health(): Promise<IHealth> {
    return this.json('GET', ManagerUrls.health(BASE));
  }

  login(username: string, password: string): Promise<ILoginAnswer> {
    return this.json('POST', ManagerUrls.login(BASE), { username, password });
  }

  whoami(): Promise<IWhoami> {
    return this.json('GET', ManagerUrls.whoami(BASE));
  }

  async serviceNames(): Promise<string[]> {
    const answer = await this.json<{ services: Array<{ name: string }> }>(
      'GET',
      ManagerUrls.services(BASE)
    );
    return answer.services.map(s => s.name);
  }

  service(name: string): Promise<IService> {
    return this.json('GET', ManagerUrls.service(BASE, name));
  }

  async usage(name: string): Promise<Record<string, IUsage | null>> {
    const answer = await this.json<{ usage: Record<string, IUsage | null> }>(
      'GET',
      ManagerUrls.usage(BASE, name)
    );
    return answer.usage || {};
  }

  async events(): Promise<IEvent[]> {
    return (await this.json<{ events: IEvent[] }>('GET', ManagerUrls.events(BASE)))
      .events;
  }

  promote(name: string, version: string): Promise<unknown> {
    return this.json('POST', ManagerUrls.promote(BASE, name), { version });
  }

  act(
    name: string,
    action: LifecycleAction,
    version?: string | null
  ): Promise<unknown> {
    return this.json('POST', ManagerUrls.action(BASE, name, action, version));
  }

  deleteService(name: string): Promise<unknown> {
    return this.json('DELETE', ManagerUrls.service(BASE, name));
  }

  deleteVersion(name: string, version: string): Promise<unknown> {
    return this.json('DELETE', ManagerUrls.version(BASE, name, version));
  }

  /** The log's tail, then its new text as it is written, until `signal` aborts. */
  async followLog(
    name: string,
    version: string,
    tail: number,
    signal: AbortSignal
  ): Promise<ReadableStreamDefaultReader<string>> {
    const response = await this.send(
      'GET',
      ManagerUrls.logs(BASE, name, { follow: true, tail, version }),
      undefined,
      { signal }
    );
    if (!response.body) {
      throw new ApiError(-1, '', 'the browser cannot read this answer as it arrives');
    }
    return response.body.pipeThrough(new TextDecoderStream()).getReader();
  }

  async tokens(): Promise<IToken[]> {
    return (await this.json<{ tokens: IToken[] }>('GET', ManagerUrls.tokens(BASE)))
      .tokens;
  }

  createToken(request: ITokenRequest): Promise<ICreatedToken> {
    return this.json('POST', ManagerUrls.tokens(BASE), request);
  }

  revokeToken(id: string, options: IRequestOptions = {}): Promise<unknown> {
    return this.json('DELETE', ManagerUrls.token(BASE, id), undefined, options);
  }

  async users(): Promise<IUser[]> {
    return (await this.json<{ users: IUser[] }>('GET', ManagerUrls.users(BASE))).users;
  }

  createUser(user: { username: string; password: string; role: string }): Promise<IUser> {
    return this.json('POST', ManagerUrls.users(BASE), user);
  }

  deleteUser(username: string): Promise<unknown> {
    return this.json('DELETE', ManagerUrls.user(BASE, username));
  }

  private async json<T>(
    method: string,
    url: string,
    body?: unknown,
    options: IRequestOptions = {}
  ): Promise<T> {
    const response = await this.send(method, url, body, options);
    return (await response.json()) as T;
  }

  /** One request; a 401 on the session's token ends the session. */
  private async send(
    method: string,
    url: string,
    body?: unknown,
    options: IRequestOptions = {}
  ): Promise<Response> {
    const sent = session()?.token ?? null;
    const headers: Record<string, string> = {};
    if (sent) {
      headers.Authorization = `Bearer ${sent}`;
    }
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: options.signal,
        cache: 'no-store'
      });
    } catch (err) {
      if (isAbort(err)) {
        throw err;
      }
      // fetch rejects only when no answer came (or for an abort, above).
      const detail = err instanceof Error ? err.message : String(err);
      throw new ApiError(0, 'network-error', `no answer (${detail})`);
    }
    if (response.status === 401 && sent && !options.keepSession) {
      // Several calls may fail together, or one may outlive its session: only the session it used ends.
      if (session()?.token === sent) {
        endSession(
          'Your session has ended (its token expired or was revoked). Please log in again.'
        );
      }
      throw new ApiError(401, SESSION_ENDED, 'session ended');
    }
    if (!response.ok) {
      let data: unknown = undefined;
      try {
        data = await response.json();
      } catch {
        // Not JSON (a proxy in front of the manager, say): the status line is all there is.
      }
      throw errorFromResponse(response.status, data, response.statusText);
    }
    return response;
  }
}

export const api = new ManagerApi();
