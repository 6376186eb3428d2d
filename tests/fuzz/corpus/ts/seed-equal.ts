@univariate true
@equalLength true
@seriesLength 3
@classLabel false
@data
1,2,3
4,5,6
