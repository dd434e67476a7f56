// The room's screen: connect to the agent, show each room.state it sends, carry the media.
// Nothing on this page is operated; every message is handled in order, one at a time.

import { RoomCall } from './call.js';
import { AgentLink } from './link.js';
import { show } from './screen.js';

let state = { screen: 'starting', call: null };
let firstState = true;
let linkDown = false;
let inbox = Promise.resolve();

const link = new AgentLink({
  open: () => {},
  message: (m) => receive(m),
  down: (code) => queue(() => {
    linkDown = true;
    if (code === 4409) {
      // Another screen took over this room.
      state = { screen: 'unavailable', reason: 'replaced', call: null };
      linkDown = false;
      call.stop();
    }
    show(state, { linkDown });
  }),
});
const call = new RoomCall((m) => link.send(m));

function queue(task) {
  inbox = inbox.then(task).catch((err) => console.warn('room screen step failed', err && err.name));
}

function receive(m) {
  switch (m.type) {
    case 'room.state':
      queue(() => onState(m));
      break;
    case 'offer':
    case 'answer':
    case 'ice':
      queue(() => call.onSignal(m));
      break;
    default:
      break;   // pong; an error about a candidate sent while the agent was reconnecting
  }
}

async function onState(next) {
  const joinedLate = firstState && Boolean(next.call);
  const recover = linkDown || state.screen === 'reconnecting';
  firstState = false;
  linkDown = false;
  state = next;
  show(state);
  await call.update(state.call, { joinedLate, recover });
}

link.connect();
