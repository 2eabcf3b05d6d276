import { Button, stopIcon } from '@jupyterlab/ui-components';
import React from 'react';

import { IJob, isActive, stateCounts } from '../model';

export interface IJobsProps {
  jobs: IJob[];
  onCancel: (job: string) => Promise<void>;
}

/** Recent jobs, newest first, with each site's state; cancel the ones still running. */
export function JobsView(props: IJobsProps): JSX.Element {
  if (props.jobs.length === 0) {
    return (
      <div className="jp-EdgeMuted jp-EdgeEmpty">
        No jobs yet: run a %%edge cell.
      </div>
    );
  }
  return (
    <ul className="jp-EdgeJobs">
      {props.jobs.map(job => (
        <JobItem job={job} key={job.id} onCancel={props.onCancel} />
      ))}
    </ul>
  );
}

function JobItem(props: {
  job: IJob;
  onCancel: (job: string) => Promise<void>;
}): JSX.Element {
  const { job } = props;
  const counts = Object.entries(stateCounts(job))
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  const when = new Date(job.created * 1000).toLocaleTimeString();
  const firstLine =
    job.source.split('\n').find(line => line.trim() !== '') ?? job.source;
  return (
    <li className="jp-EdgeJob" data-job={job.id} data-state={job.state}>
      <div className="jp-EdgeJob-header">
        <span
          className={`jp-EdgeStatusDot jp-mod-${job.state}`}
          title={job.state}
        />
        <span className="jp-EdgeJob-id">{job.id}</span>
        <span className="jp-EdgeJob-source" title={job.source}>
          {firstLine}
        </span>
        {isActive(job) && (
          <Button
            className="jp-EdgeJob-cancel"
            minimal
            small
            title={`Cancel job ${job.id}`}
            aria-label={`Cancel job ${job.id}`}
            onClick={() => void props.onCancel(job.id)}
          >
            <stopIcon.react tag="span" />
          </Button>
        )}
      </div>
      <div className="jp-EdgeMuted jp-EdgeJob-meta">{`${when} · ${job.owner} · ${counts}`}</div>
      <div className="jp-EdgeJob-executions">
        {job.executions.map(ex => (
          <span
            className={`jp-EdgeExecution jp-mod-${ex.state}`}
            key={ex.id}
            data-site={ex.site}
            data-state={ex.state}
            title={
              ex.error ??
              `${ex.site}${ex.shard ? ` (${ex.dataset}@${ex.shard})` : ''}, attempt ${ex.attempt}`
            }
          >
            {`${ex.site}: ${ex.state}`}
          </span>
        ))}
      </div>
    </li>
  );
}
