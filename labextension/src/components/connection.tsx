import { Button, InputGroup } from '@jupyterlab/ui-components';
import React, { useState } from 'react';

import { IAnnouncedFleet, IConnection } from '../model';

export interface IConnectionProps {
  connection: IConnection | null;
  announced: IAnnouncedFleet[];
  error: string | null;
  onConnect: (address: string) => Promise<void>;
}

/** The fleet the server watches, its state, and a field to watch another. */
export function ConnectionView(props: IConnectionProps): JSX.Element {
  const [address, setAddress] = useState('');
  const [failure, setFailure] = useState<string | null>(null);
  const connection = props.connection;
  const status = connection?.status ?? 'disconnected';

  const connect = async (target: string) => {
    setFailure(null);
    try {
      await props.onConnect(target.trim());
      setAddress('');
    } catch (error) {
      setFailure(error instanceof Error ? error.message : String(error));
    }
  };
  const others = props.announced.filter(a => a.address !== connection?.address);

  return (
    <div className="jp-EdgeConnection" data-status={status}>
      <div className="jp-EdgeConnection-current">
        <span className={`jp-EdgeStatusDot jp-mod-${status}`} title={status} />
        <span className="jp-EdgeConnection-address">
          {connection?.address ?? 'no fleet set'}
        </span>
        <span className="jp-EdgeConnection-status">{status}</span>
      </div>
      {(connection?.error || props.error) && (
        <div className="jp-EdgeConnection-error">
          {connection?.error ?? props.error}
        </div>
      )}
      <form
        className="jp-EdgeConnection-form"
        onSubmit={event => {
          event.preventDefault();
          if (address.trim() !== '') {
            void connect(address);
          }
        }}
      >
        <InputGroup
          className="jp-EdgeConnection-input"
          placeholder="tcp://scheduler:8786"
          value={address}
          onChange={event => setAddress(event.target.value)}
          aria-label="Scheduler address"
        />
        <Button type="submit" minimal small disabled={address.trim() === ''}>
          Connect
        </Button>
      </form>
      {failure && <div className="jp-EdgeConnection-error">{failure}</div>}
      {others.length > 0 && (
        <ul
          className="jp-EdgeConnection-announced"
          aria-label="Fleets kernels are connected to"
        >
          {others.map(fleet => (
            <li key={fleet.address}>
              <button
                className="jp-EdgeLink"
                title={`announced by kernel process ${fleet.pid}`}
                onClick={() => void connect(fleet.address)}
              >
                {fleet.address}
              </button>
              <span className="jp-EdgeMuted">
                {fleet.embedded ? ' embedded demo' : ' kernel'}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
