import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IAnnouncedFleet,
  IConnection,
  IFleet,
  IJob,
  parseAnnounced,
  parseConnection,
  parseFleet,
  parseJobs
} from './model';
import { requestAPI } from './request';

/** How often the sidebar asks, and how far it backs off when the server fails. */
export interface IPollSettings {
  interval: number;
  maxInterval: number;
  jobs: number;
}

export const DEFAULT_POLL: IPollSettings = {
  interval: 2000,
  maxInterval: 30000,
  jobs: 20
};

/**
 * The fleet the server watches, kept fresh by a `Poll` that backs off while
 * the server fails and stands by while the sidebar is hidden.
 */
export class EdgeFleetModel {
  constructor(
    isVisible: () => boolean,
    settings: IPollSettings = DEFAULT_POLL
  ) {
    this._settings = settings;
    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: {
        interval: settings.interval,
        backoff: true,
        max: settings.maxInterval
      },
      name: 'jupyter-edge:fleet',
      // Hidden sidebar or hidden browser tab: no requests at all.
      standby: () => !isVisible() || 'when-hidden'
    });
  }

  /** Emitted after every answer (or failure) from the server. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get fleet(): IFleet | null {
    return this._fleet;
  }

  get jobs(): IJob[] {
    return this._jobs;
  }

  get announced(): IAnnouncedFleet[] {
    return this._announced;
  }

  /** Why the last request failed, or `null`. */
  get error(): string | null {
    return this._error;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Ask now (for the refresh command, or when the sidebar is shown). */
  async refreshNow(): Promise<void> {
    await this._poll.refresh();
    await this._poll.tick;
  }

  updateSettings(settings: Partial<IPollSettings>): void {
    this._settings = { ...this._settings, ...settings };
    this._poll.frequency = {
      interval: this._settings.interval,
      backoff: true,
      max: this._settings.maxInterval
    };
  }

  /** One round: the fleet and recent jobs. Throws so the poll backs off. */
  async refresh(): Promise<void> {
    try {
      // The announced fleets are a listing of the server's runtime folder: cheap.
      const [fleet, jobs, connection] = await Promise.all([
        requestAPI<unknown>('fleet'),
        requestAPI<unknown>(`jobs?limit=${this._settings.jobs}`),
        requestAPI<{ announced?: unknown }>('connection')
      ]);
      this._fleet = parseFleet(fleet);
      this._jobs = parseJobs(jobs);
      this._announced = parseAnnounced(connection.announced);
      this._error = null;
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
      throw error;
    } finally {
      this._changed.emit();
    }
  }

  /** Watch another fleet: `PUT connection`. */
  async connect(address: string): Promise<IConnection> {
    const answer = await requestAPI<unknown>('connection', {
      method: 'PUT',
      body: JSON.stringify({ address })
    });
    const connection = parseConnection(answer);
    await this.refreshNow();
    return connection;
  }

  /** Cancel a job's unfinished executions: `POST jobs/{id}/cancel`. */
  async cancel(jobId: string): Promise<void> {
    await requestAPI<unknown>(`jobs/${encodeURIComponent(jobId)}/cancel`, {
      method: 'POST'
    });
    await this.refreshNow();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _settings: IPollSettings;
  private _poll: Poll;
  private _fleet: IFleet | null = null;
  private _jobs: IJob[] = [];
  private _announced: IAnnouncedFleet[] = [];
  private _error: string | null = null;
  private _changed = new Signal<this, void>(this);
}
