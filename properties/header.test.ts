import { PROPERTIES } from '../harness/properties';
import { directTests } from './support/direct';
import { propertyTest } from './support/property';

propertyTest(PROPERTIES.find((p) => p.id === 'HEADER')!);

// The direct HEADER property (harness/direct/header-pairs.ts): arbitrary header pairs, driver vs spec model.
directTests('HEADER');
