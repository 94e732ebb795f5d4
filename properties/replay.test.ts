import { PROPERTIES } from '../harness/properties';
import { directTests } from './support/direct';
import { propertyTest } from './support/property';

propertyTest(PROPERTIES.find((p) => p.id === 'REPLAY')!);

// The direct REPLAY properties (harness/direct/): arbitrary logs, single entries, the entry encoder, the log writer's ring.
directTests('REPLAY');
