/* score.h: (to be written) */
#ifndef LLAMIX_SCORE_H
#define LLAMIX_SCORE_H
#endif
