import { PROPERTIES } from '../harness/properties';
import { directTests } from './support/direct';
import { propertyTest } from './support/property';

propertyTest(PROPERTIES.find((p) => p.id === 'READ')!);

// The direct READ property (harness/direct/bat.ts): the driver's in-memory BAT vs the spec's bit fields.
directTests('READ');
