/**
 * The cluster model the server extension answers (labcluster/server/manager.py, MODEL_FIELDS): field for field,
 * which tests/test_sidebar.py checks.
 */

export interface IOwner {
  kind: 'kernel' | 'server' | 'process';
  notebook: string | null;
  pid: number | null;
}

export interface IGroup {
  name: string;
  workers: number;
  threads: number;
  gpus: number;
  simulated_gpus: number;
  resources: { [name: string]: number };
}

export interface ITotals {
  cpus: number;
  gpus: number;
  simulated_gpus: number;
  threads: number;
  memory: number;
  resources: { [name: string]: number };
}

export interface IUse {
  cpu_percent: number;
  memory: number;
}

export interface IDashboard {
  page: string;
  title: string;
  path: string;
}

export interface IClusterModel {
  id: string;
  name: string;
  address: string;
  owner: IOwner;
  started: number;
  processes: boolean;
  status: 'running' | 'unreachable';
  workers: number;
  groups: IGroup[];
  totals: ITotals;
  use: IUse;
  dashboard_port: number | null;
  dashboards: IDashboard[];
  connect_code: string;
}

/** What the start form sends (labcluster/server/manager.py, CREATE_FIELDS). */
export interface ICreateRequest {
  name?: string;
  workers?: number;
  threads?: number;
  gpus?: number;
  simulate_gpus?: boolean;
  resources?: { [name: string]: number };
}
