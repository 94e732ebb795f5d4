import { PROPERTIES } from '../harness/properties';
import { propertyTest } from './support/property';

propertyTest(PROPERTIES.find((p) => p.id === 'SPACE')!);
