/**
 * Calls to the jupyter-server extension through `ServerConnection` (Jupyter's auth and XSRF).
 */

import { ServerConnection } from '@jupyterlab/services';

import { ApiError, errorFromResponse } from './core/errors';
import { IDeployApi } from './core/model';
import {
  ICredentials,
  IService,
  IServiceList,
  IStatus,
  LifecycleAction
} from './core/types';
import { Urls } from './core/urls';

export class DeployApi implements IDeployApi {
  constructor(settings?: ServerConnection.ISettings) {
    this.settings = settings || ServerConnection.makeSettings();
  }

  readonly settings: ServerConnection.ISettings;

  private get base(): string {
    return this.settings.baseUrl;
  }

  status(): Promise<IStatus> {
    return this.request<IStatus>('GET', Urls.status(this.base));
  }

  login(credentials: ICredentials): Promise<IStatus> {
    return this.request<IStatus>('POST', Urls.login(this.base), credentials);
  }

  logout(): Promise<IStatus> {
    return this.request<IStatus>('POST', Urls.logout(this.base), {});
  }

  async services(): Promise<IService[]> {
    const answer = await this.request<IServiceList>(
      'GET',
      Urls.services(this.base)
    );
    return Array.isArray(answer?.services) ? answer.services : [];
  }

  service(name: string): Promise<IService> {
    return this.request<IService>('GET', Urls.service(this.base, name));
  }

  async logs(
    name: string,
    options: { tail?: number; version?: string | null } = {}
  ): Promise<string> {
    const answer = await this.request<{ text?: string }>(
      'GET',
      Urls.logs(this.base, name, options)
    );
    return typeof answer?.text === 'string' ? answer.text : '';
  }

  promote(name: string, version: string): Promise<unknown> {
    return this.request('POST', Urls.promote(this.base, name), { version });
  }

  act(
    name: string,
    action: LifecycleAction,
    version?: string | null
  ): Promise<unknown> {
    return this.request(
      'POST',
      Urls.action(this.base, name, action, version),
      {}
    );
  }

  deleteService(name: string): Promise<unknown> {
    return this.request('DELETE', Urls.service(this.base, name));
  }

  deleteVersion(name: string, version: string): Promise<unknown> {
    return this.request('DELETE', Urls.version(this.base, name, version));
  }

  async docsLink(name: string): Promise<string> {
    const answer = await this.request<{ url?: string }>(
      'GET',
      Urls.docsLink(this.base, name)
    );
    if (!answer || typeof answer.url !== 'string' || !answer.url) {
      throw new ApiError(502, '', 'the server sent no docs link');
    }
    return answer.url;
  }

  /** One request; a non-2xx answer or no answer at all becomes an ApiError. */
  async request<T = unknown>(
    method: string,
    url: string,
    body?: unknown
  ): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (err) {
      if (err instanceof ServerConnection.NetworkError) {
        throw new ApiError(0, 'network-error', `no answer (${err.message})`);
      }
      throw err;
    }
    const text = await response.text();
    let data: unknown = undefined;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = undefined;
      }
    }
    if (!response.ok) {
      throw errorFromResponse(response.status, data, response.statusText);
    }
    return data as T;
  }
}
