import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { MimeData } from '@lumino/coreutils';
import { Drag } from '@lumino/dragdrop';
import { Widget } from '@lumino/widgets';

import { LabclusterAPIError, requestAPI } from './api';
import { ICreateRequest, IClusterModel } from './model';

/** How often the panel reads the clusters while shown, and while hidden (it backs off). */
const VISIBLE_MS = 2000;
const HIDDEN_MS = 15000;

/** How far the pointer moves on a dashboard button before it is a drag, not a click (as Lab's file browser). */
const DRAG_THRESHOLD = 5;
/** What Lumino's dock panels accept on a drop: a function that makes the widget to dock. */
const FACTORY_MIME = 'application/vnd.lumino.widget-factory';

/** A cluster's card, what it was built from (the model without its live use), and how to update that use. */
interface ICard {
  key: string;
  card: HTMLElement;
  update: (c: IClusterModel) => void;
}

export interface IPanelActions {
  openDashboard(cluster: IClusterModel, page: string): void;
  /** The dashboard page's widget (made, or the one open already), for Lab's dock to put where it is dropped; null
   * where the shell has no dock (Notebook 7). */
  dashboardWidget: ((cluster: IClusterModel, page: string) => Widget | null) | null;
  insertCode(code: string): void;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text; // never innerHTML: names and paths come from users
  }
  return node;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function amount(n: number): string {
  return Number.isInteger(n) ? `${n}` : n.toFixed(1);
}

/** A one-line summary of what the cluster has: CPU slots, memory, GPUs (simulated ones said so), resources. */
export function totalsLine(c: IClusterModel): string {
  const t = c.totals;
  const parts = [`${amount(t.cpus)} CPU`, gib(t.memory)];
  if (t.gpus) {
    parts.push(`${amount(t.gpus)} GPU`);
  }
  if (t.simulated_gpus) {
    parts.push(`${amount(t.simulated_gpus)} GPU (simulated)`);
  }
  for (const [name, n] of Object.entries(t.resources)) {
    parts.push(`${amount(n)} ${name}`);
  }
  return parts.join(' · ');
}

function ownerLine(c: IClusterModel): string {
  const o = c.owner;
  if (o.kind === 'kernel') {
    return o.notebook ? `started by ${o.notebook}` : 'started by a kernel';
  }
  return o.kind === 'server' ? 'started from this panel' : 'started by a script';
}

/** The start form: workers, threads, GPUs (simulated or real), custom resources. */
class StartForm extends Widget {
  constructor() {
    super({ node: el('div', 'lc-form') });
    const row = (label: string, input: HTMLElement) => {
      const line = el('label', 'lc-form-row', label);
      line.appendChild(input);
      this.node.appendChild(line);
    };
    this.name.placeholder = 'optional';
    this.workers.type = this.threads.type = this.gpus.type = 'number';
    this.workers.min = this.threads.min = '1';
    this.gpus.min = '0';
    this.workers.value = '1';
    this.threads.value = '2';
    this.gpus.value = '0';
    this.simulate.type = 'checkbox';
    this.simulate.checked = true;
    this.resources.placeholder = 'e.g. special=2, fast=1';
    row('Name', this.name);
    row('CPU workers', this.workers);
    row('Threads each', this.threads);
    row('GPU workers', this.gpus);
    row('Simulate the GPUs', this.simulate);
    row('Custom resources', this.resources);
  }

  getValue(): ICreateRequest {
    const request: ICreateRequest = {
      workers: Number(this.workers.value),
      threads: Number(this.threads.value),
      gpus: Number(this.gpus.value),
      simulate_gpus: this.simulate.checked
    };
    if (this.name.value.trim()) {
      request.name = this.name.value.trim();
    }
    const resources: { [name: string]: number } = {};
    for (const pair of this.resources.value.split(',').map(s => s.trim()).filter(Boolean)) {
      const [key, value] = pair.split('=').map(s => s.trim());
      resources[key] = value === undefined ? NaN : Number(value);
    }
    if (Object.keys(resources).length) {
      request.resources = resources;
    }
    return request;
  }

  readonly name = el('input');
  readonly workers = el('input');
  readonly threads = el('input');
  readonly gpus = el('input');
  readonly simulate = el('input');
  readonly resources = el('input');
}

class ScaleForm extends Widget {
  constructor(cluster: IClusterModel) {
    super({ node: el('div', 'lc-form') });
    for (const g of cluster.groups) {
      const option = el('option', undefined, g.name);
      option.value = g.name;
      this.group.appendChild(option);
    }
    this.count.type = 'number';
    this.count.min = '0';
    const size = () => `${cluster.groups.find(g => g.name === this.group.value)?.workers ?? 1}`;
    this.count.value = size();
    this.group.addEventListener('change', () => (this.count.value = size()));
    const a = el('label', 'lc-form-row', 'Group');
    a.appendChild(this.group);
    const b = el('label', 'lc-form-row', 'Workers');
    b.appendChild(this.count);
    this.node.append(a, b);
  }

  getValue(): { group: string; workers: number } {
    return { group: this.group.value, workers: Number(this.count.value) };
  }

  readonly group = el('select');
  readonly count = el('input');
}

/** The left-sidebar panel: every cluster the server knows, live, with its actions. */
export class ClusterPanel extends Widget {
  constructor(private readonly actions: IPanelActions) {
    super({ node: el('div', 'lc-panel') });
    this.id = 'labcluster-sidebar';
    this.title.caption = 'labcluster clusters';
    const header = el('div', 'lc-header');
    header.appendChild(el('span', 'lc-title', 'labcluster'));
    const start = el('button', 'jp-mod-styled jp-mod-accept lc-start', 'Start cluster');
    start.addEventListener('click', () => void this.startCluster());
    header.appendChild(start);
    this.node.append(header, this.message, this.list);
    void this.poll();
  }

  /** Read the clusters now (and keep polling: fast while shown, slowly while hidden). */
  async refresh(): Promise<void> {
    // one request at a time: a slow answer (an unreachable cluster takes seconds) is never overtaken by another
    this.inFlight ??= this.read().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  private async read(): Promise<void> {
    try {
      this.clusters = await requestAPI<IClusterModel[]>('clusters');
      this.message.textContent = '';
      this.message.className = 'lc-message';
    } catch (error) {
      this.clusters = [];
      this.message.textContent = (error as Error).message;
      this.message.className = 'lc-message lc-error';
    }
    this.render();
  }

  private async poll(): Promise<void> {
    window.clearTimeout(this.timer); // one loop: a poll started by showing the panel replaces the pending one
    if (this.isDisposed) {
      return;
    }
    if (this.isVisible || this.clusters === null) {
      await this.refresh();
    }
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.poll(), this.isVisible ? VISIBLE_MS : HIDDEN_MS);
  }

  protected onAfterShow(): void {
    window.clearTimeout(this.timer);
    void this.poll(); // at once, not after the hidden interval
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  async startCluster(): Promise<void> {
    const result = await showDialog({
      title: 'Start a labcluster cluster',
      body: new StartForm(),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start' })]
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    this.message.textContent = 'starting a cluster…';
    this.message.className = 'lc-message';
    await this.act('Could not start the cluster', () =>
      requestAPI('clusters', { method: 'POST', body: JSON.stringify(result.value) })
    );
  }

  private async act(title: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (error) {
      await showErrorMessage(title, (error as LabclusterAPIError).message);
    }
    await this.refresh();
  }

  private async scale(c: IClusterModel): Promise<void> {
    const result = await showDialog({
      title: `Scale ${c.name}`,
      body: new ScaleForm(c),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Scale' })]
    });
    if (result.button.accept && result.value) {
      await this.act('Could not scale the cluster', () =>
        requestAPI(`clusters/${c.id}`, { method: 'PATCH', body: JSON.stringify(result.value) })
      );
    }
  }

  private async stop(c: IClusterModel): Promise<void> {
    const theirs = c.owner.kind !== 'server';
    const result = await showDialog({
      title: `Stop ${c.name}?`,
      body: theirs
        ? `This cluster was ${ownerLine(c)}: its work stops with it, and that notebook loses its cluster.`
        : 'Its workers stop, and what they hold is lost.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
    });
    if (result.button.accept) {
      await this.act('Could not stop the cluster', () =>
        requestAPI(`clusters/${c.id}${theirs ? '?confirm=1' : ''}`, { method: 'DELETE' })
      );
    }
  }

  /** Show the clusters. A card is rebuilt only when what it shows changed (its live use is updated in place), so
   * a button under the pointer or the keyboard focus stays put while the panel polls. */
  private render(): void {
    const list = this.list;
    const clusters = this.clusters ?? [];
    this.empty.remove();
    if (this.clusters !== null && clusters.length === 0 && !this.message.textContent) {
      list.appendChild(this.empty);
    }
    const seen = new Set<string>();
    let previous: Element | null = null;
    for (const c of clusters) {
      seen.add(c.id);
      const key = JSON.stringify({ ...c, use: null });
      let shown = this.cards.get(c.id);
      if (!shown || shown.key !== key) {
        shown?.card.remove();
        shown = { key, ...this.card(c) };
        this.cards.set(c.id, shown);
      }
      shown.update(c);
      const at: Element | null = previous ? previous.nextElementSibling : list.firstElementChild;
      if (at !== shown.card) {
        list.insertBefore(shown.card, at);
      }
      previous = shown.card;
    }
    for (const [id, shown] of this.cards) {
      if (!seen.has(id)) {
        shown.card.remove();
        this.cards.delete(id);
      }
    }
  }

  /** One cluster's card, and how to update its live use. */
  private card(c: IClusterModel): Omit<ICard, 'key'> {
    const card = el('div', `lc-cluster lc-${c.status}`);
    card.dataset.clusterId = c.id;
    card.appendChild(el('div', 'lc-name', c.name));
    card.appendChild(el('div', 'lc-owner', `${ownerLine(c)} · ${c.address}`));
    let update: ICard['update'] = () => undefined;
    if (c.status === 'unreachable') {
      card.appendChild(el('div', 'lc-error', 'its scheduler does not answer'));
    } else {
      const groups = c.groups.map(g =>
        g.workers ? `${g.name}: ${g.workers} × ${g.threads / g.workers} threads` : `${g.name}: no workers`
      );
      card.appendChild(el('div', 'lc-groups', groups.join(' · ')));
      card.appendChild(el('div', 'lc-totals', totalsLine(c)));
      const use = el('div', 'lc-use');
      const cpu = el('span');
      const bar = el('div', 'lc-bar');
      const fill = el('div', 'lc-bar-fill');
      const memory = el('span');
      bar.appendChild(fill);
      use.append(cpu, bar, memory);
      card.appendChild(use);
      update = (now: IClusterModel) => {
        cpu.textContent = `CPU ${now.use.cpu_percent.toFixed(0)}%`;
        fill.style.width = `${Math.min(100, now.use.cpu_percent)}%`;
        memory.textContent = `memory ${gib(now.use.memory)} / ${gib(now.totals.memory)}`;
      };
    }
    const buttons = el('div', 'lc-actions');
    const button = (label: string, title: string, onClick: () => void) => {
      const b = el('button', 'jp-mod-styled lc-action', label);
      b.title = title;
      b.addEventListener('click', onClick);
      buttons.appendChild(b);
      return b;
    };
    if (c.dashboards.length) {
      buttons.appendChild(el('span', 'lc-actions-label', 'dashboards'));
    }
    const dock = this.actions.dashboardWidget;
    for (const d of c.dashboards) {
      const b = button(d.page, dock ? `open ${d.title} as a tab, or drag it where it should go` :
                       `open ${d.title} in a browser tab`, () => this.actions.openDashboard(c, d.page));
      if (dock) {
        b.classList.add('lc-draggable');
        draggable(b, d.title, () => dock(c, d.page));
      }
    }
    buttons.appendChild(el('span', 'lc-actions-label', 'cluster'));
    button('insert connect code', 'a cell that connects the active notebook to this cluster', () =>
      this.actions.insertCode(c.connect_code)
    );
    button('scale', 'resize a worker group', () => void this.scale(c));
    button('stop', 'stop this cluster', () => void this.stop(c));
    card.appendChild(buttons);
    return { card, update };
  }

  clusters: IClusterModel[] | null = null;
  private readonly cards = new Map<string, ICard>();
  private readonly empty = el('p', 'lc-empty', 'No cluster yet. Start one here, or run lc.init() in a notebook.');
  private timer = 0;
  private inFlight: Promise<void> | null = null;
  private readonly message = el('div', 'lc-message');
  private readonly list = el('div', 'lc-list');
}

/** Dragging ``node`` (past a few pixels) carries ``make``'s widget: Lab's main area docks it where it is dropped
 * (beside what is there: a split; on a tab bar: a tab). A press without a move stays a click. */
function draggable(node: HTMLElement, label: string, make: () => Widget | null): void {
  node.addEventListener('pointerdown', (down: PointerEvent) => {
    if (down.button !== 0) {
      return;
    }
    const move = (event: PointerEvent) => {
      if (Math.abs(event.clientX - down.clientX) + Math.abs(event.clientY - down.clientY) < DRAG_THRESHOLD) {
        return;
      }
      stop();
      const mimeData = new MimeData();
      mimeData.setData(FACTORY_MIME, make);
      const image = el('div', 'lc-drag-image', label);
      const drag = new Drag({ mimeData, dragImage: image, proposedAction: 'move', supportedActions: 'copy-move' });
      void drag.start(event.clientX, event.clientY);
    };
    const stop = () => {
      document.removeEventListener('pointermove', move, true);
      document.removeEventListener('pointerup', stop, true);
      document.removeEventListener('pointercancel', stop, true);
    };
    document.addEventListener('pointermove', move, true);
    document.addEventListener('pointerup', stop, true);
    document.addEventListener('pointercancel', stop, true);
  });
}
